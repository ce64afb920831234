"""Bitrix24's own call card (`crm.bitrix24.card`), driven by call tracking: listens to the live
call events (a `ports.Notifier`, beside the agents' call windows) and submits the card's
show/hide commands (core.call_cards) to the outbox, in the call's lane, so they reach the
portal in order with the call's registration and finish.

A call the CRM must never hear of (R7, R8: an excluded number; or a withheld one) gets no
card: nothing is submitted for it. Submitting is the call's pending work (keyed by its
linkedid, in order), so the call log, which settles that work first, stores the finish after
the last hide; publishing itself never blocks."""
from __future__ import annotations

import logging
from typing import Callable

from ..core.call_cards import CardPolicy, CardsOfCall, card_changes
from ..core.commands import CallCardChange
from ..core.live_calls import CallEvent, Ended, Ringing
from ..core.model import Rules
from ..core.ports import CrmCommands
from ..core.rules import CrmAccess, screen_number
from .pending import PendingWork

log = logging.getLogger(__name__)


class CallCards:
    def __init__(self, rules: Callable[[], Rules], policy: CardPolicy, commands: CrmCommands,
                 pending: PendingWork) -> None:
        self._rules = rules
        self._policy = policy
        self._commands = commands
        self._pending = pending
        self._calls: dict[str, CardsOfCall] = {}
        self._left_out: set[str] = set()  # calls the CRM never hears of, until they end

    def publish(self, event: CallEvent) -> None:
        linkedid: str | None = getattr(event, "linkedid", None)
        if linkedid is None or self._policy is CardPolicy.NONE:
            return
        if linkedid in self._left_out:
            if isinstance(event, Ended):
                self._left_out.discard(linkedid)
            return
        call = self._calls.get(linkedid)
        if call is None and isinstance(event, Ringing) and not self._allowed(event.number):
            self._left_out.add(linkedid)
            return
        try:
            after, changes = card_changes(self._policy, call, event)
        except Exception:  # the card must never stop the call windows nor tracking
            log.exception("call %s: the call card could not follow %s", linkedid, type(event).__name__)
            return
        if after is None:
            self._calls.pop(linkedid, None)
        else:
            self._calls[linkedid] = after
        for change in changes:
            self._pending.start(linkedid, self._submit(change), in_order=True)

    def _allowed(self, number: str) -> bool:
        external = number if number.startswith("+") else None
        return screen_number(self._rules(), external).access is CrmAccess.ALLOWED

    async def _submit(self, change: CallCardChange) -> None:
        await self._commands.submit(change)
