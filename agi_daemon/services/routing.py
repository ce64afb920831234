"""The routing use case: the dialplan asks where a call goes; the CRM is asked, within a deadline.

A call is never left waiting on the CRM: the lookup runs as the call's pending work, routing
waits for it at most `deadline` seconds and then sends the call to the queue group. The
rest of the CRM work (creating records or an offer) always happens after the answer.

Each call is decided once: when the lookup answers, what it means for the CRM (core's
`answered`) is worked out once, used by the CRM work and, if routing still waits, by the
call's one `decide`; past the deadline the call is decided without it (queue group) and the
CRM work still creates what the answer says.

What a new caller creates (or the offer) is submitted to the outbox before routing hears the
answer: a call routed `ok` has its CRM intent committed to the daemon's store. When the store
cannot commit within the deadline the call is routed `fallback` and the intent is committed
as soon as it can be (and rebuilt by the hangup report, should the daemon stop meanwhile).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable, Sequence

from ..core.decisions import (
    FAILED, LATE, NOT_ASKED, CrmAction, Decision, Lookup, RoutingStatus, answered, decide,
)
from ..core.live_calls import NoOneListens
from ..core.model import Match, Rules
from ..core.phone import masked
from ..core.ports import Clock, CrmCommands, CrmError, CrmLookup, ImmediateLookup, Notifier, WouldWait
from ..core.rules import CallEntry, CallFacts, CrmAccess, UnknownLine, identify, screen
from .crm_intent import submit_intent, submit_without_lookup
from .pending import PendingWork
from .retry import DEFAULT_DELAYS, attempt, with_retries
from .routed_calls import RoutedCalls

log = logging.getLogger(__name__)


class RoutingService:
    def __init__(
        self,
        rules: Callable[[], Rules],
        crm: CrmLookup,
        clock: Clock,
        pending: PendingWork,
        *,
        commands: CrmCommands,
        deadline: float,
        routed: RoutedCalls,
        retry_delays: Sequence[float] = DEFAULT_DELAYS,
        dry_run: bool = False,
        notifier: Notifier | None = None,
    ) -> None:
        """`rules` returns the running rules (they change on reload); `deadline` is
        daemon.crm_deadline_ms in seconds; `routed` keeps each decision for the call log.
        `dry_run` (simulate): decide exactly as for a real call, but create nothing.
        `commands`: the outbox, where what the call creates is submitted. `notifier` hears of
        offers made (records created are told by the outbox once delivered)."""
        self._notifier = notifier or NoOneListens()
        self._rules = rules
        self._crm = crm
        # asked first when it can answer at once (checked once: a Protocol isinstance is slow)
        self._immediate = crm if isinstance(crm, ImmediateLookup) else None
        self._commands = commands
        self._clock = clock
        self._pending = pending
        self._deadline = deadline
        self._routed = routed
        self._retry_delays = retry_delays
        self._dry_run = dry_run

    async def route(self, entry: CallEntry, linkedid: str) -> Decision:
        """Where the call that entered the dialplan as `entry` goes."""
        rules = self._rules()
        call = identify(rules, entry, linkedid)
        if isinstance(call, UnknownLine):
            log.warning("call %s: no line for %s, the dialplan falls back", linkedid, masked(call.line_text))
            return Decision(RoutingStatus.ERROR, None, None, None, call.trace)
        screening = screen(rules, call)
        if screening.access is CrmAccess.ALLOWED:
            lookup = await self._look_up(rules, call)
        else:
            log.info("call %s: %s, no CRM lookup", linkedid, screening.access.value)
            lookup = NOT_ASKED
        decision = decide(rules, call, screening, lookup)
        self._routed.remember(call, decision.route, lookup.match.entity if lookup.match else None)
        return decision

    async def _look_up(self, rules: Rules, call: CallFacts) -> Lookup:
        """Start the call's CRM work and wait for its lookup, at most the deadline. A CRM
        that answers at once (the embedded store's read on the event loop) is asked first:
        a known client is then decided with no task, timer or wakeup; a new caller's CRM work
        starts with the answer in hand."""
        found: Match | None | WouldWait = WouldWait()
        answer: Lookup | None = None  # what `found` says, once decided: not decided twice
        if self._immediate is not None:
            assert call.external is not None  # screened ALLOWED: a readable number
            try:
                found = self._immediate.find_by_phone_now(call.external)
            except WouldWait as not_now:
                found = not_now
            if not isinstance(found, WouldWait):
                answer = answered(rules, call, found)
                if answer.action is None or self._dry_run:
                    return answer  # nothing to create: no CRM work after the answer
        loop = asyncio.get_running_loop()
        looked_up: asyncio.Future[Lookup] = loop.create_future()
        self._pending.start(call.linkedid, self._crm_work(rules, call, looked_up, found, answer))
        # The deadline answers the future itself (LATE): one timer, where wait_for(shield())
        # costs two more futures and their callbacks on every call. The CRM work goes on.
        late = loop.call_later(self._deadline, _resolve, looked_up, LATE)
        try:
            lookup = await looked_up
        finally:
            late.cancel()
        if lookup is LATE:
            log.warning("call %s: CRM lookup over %.0f ms, routing to the queue group", call.linkedid, self._deadline * 1000)
        return lookup

    async def _crm_work(self, rules: Rules, call: CallFacts, looked_up: asyncio.Future[Lookup],
                        found: Match | None | WouldWait, answer: Lookup | None = None) -> None:
        """Look the caller up (unless `found` is the answer already, and `answer` what it
        decides), submit what the answer says to create, then tell the waiting router. (PendingWork logs any other error: this
        task belongs to the app's TaskGroup.)"""
        assert call.external is not None  # screened ALLOWED: a readable number
        phone = call.external
        try:
            try:
                try:
                    match = found if not isinstance(found, WouldWait) else await attempt(
                        lambda: self._crm.find_by_phone(phone))
                except CrmError as exc:
                    log.warning("call %s: CRM lookup of %s failed (%s), retrying", call.linkedid, masked(phone), exc)
                    _resolve(looked_up, FAILED)
                    match = await with_retries(lambda: self._crm.find_by_phone(phone), self._retry_delays)
            except CrmError as exc:
                await self._create_without_lookup(rules, call, exc)
                return
            lookup = answer if answer is not None and match is found else answered(rules, call, match)
            if not self._dry_run:
                await self._perform(call, lookup.action)
            _resolve(looked_up, lookup)
        except CrmError as exc:
            log.error("call %s: CRM work for %s given up: %s", call.linkedid, masked(phone), exc)
        finally:  # whatever happened, the router waiting for the lookup is answered
            _resolve(looked_up, FAILED)

    async def _create_without_lookup(self, rules: Rules, call: CallFacts, exc: CrmError) -> None:
        if self._dry_run:
            log.error("call %s: CRM lookup of %s given up: %s", call.linkedid, masked(call.external), exc)
            return
        await submit_without_lookup(self._commands, self._notifier, rules, call, self._clock.now(), exc)

    async def _perform(self, call: CallFacts, action: CrmAction) -> None:
        """Submit what the call creates; returns once it is durable."""
        await submit_intent(self._commands, self._notifier, call, action, self._clock.now())


def _resolve(future: asyncio.Future[Lookup], value: Lookup) -> None:
    if not future.done():
        future.set_result(value)
