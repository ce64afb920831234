"""Call tracking (R10, R12): folds channel events through core.tracker and performs its effects.

The fold is pure and synchronous; every effect touches the CRM, so it runs as pending work of
the call (owned by the app's TaskGroup) after the routing's own CRM work for that call.
"""
from __future__ import annotations

import logging
from typing import Any, AsyncIterable, Awaitable, Callable, Coroutine

from ..core.live_calls import NoOneListens, OfferMade, live_events
from ..core.model import Offer, Rules
from ..core.ports import CrmError, Notifier
from ..core.tracker import CallEnded, Reassign, Resynced, TrackerEvent, TrackerState, Unrouted, step
from .call_log import CallLogService
from .pending import PendingWork
from .reassign import ReassignService

log = logging.getLogger(__name__)


class TrackingService:
    def __init__(
        self,
        rules: Callable[[], Rules],
        call_log: CallLogService,
        reassign: ReassignService,
        pending: PendingWork,
        notifier: Notifier | None = None,
        offers: Callable[[str], Awaitable[Offer | None]] | None = None,
    ) -> None:
        """`notifier` hears what changes in each call as it happens (the call windows);
        `offers` gives the offer a call made (R3), as stored, for the calls a resync finds in
        progress: their routing, and its offer, happened before this daemon's start."""
        self._rules = rules
        self._notifier = notifier or NoOneListens()
        self._offers = offers
        self._call_log = call_log
        self._reassign = reassign
        self._pending = pending
        self._state = TrackerState()
        self.events_seen = 0

    @property
    def calls_in_progress(self) -> int:
        return len(self._state.calls)

    async def run(self, events: AsyncIterable[TrackerEvent]) -> None:
        """Follow calls until the event source ends (the AMI client is closed)."""
        async for event in events:
            self.handle(event)

    def handle(self, event: TrackerEvent) -> None:
        self.events_seen += 1
        rules, before = self._rules(), self._state
        try:
            self._state, effects = step(rules, before, event)
        except Exception:  # a tracker bug must not stop tracking every other call
            log.exception("call tracking could not apply %s; state kept", type(event).__name__)
            return
        self._publish(rules, before, event, effects)
        if isinstance(event, Resynced) and self._offers is not None:
            for linkedid in self._state.calls.keys() - before.calls.keys():
                self._pending.start(f"offer:{linkedid}", self._offer_again(linkedid, self._offers))
        for effect in effects:
            work: Coroutine[Any, Any, object]
            if isinstance(effect, CallEnded):
                record = effect.record
                work = self._call_log.tracked_call_ended(record, partial=effect.partial)
                linkedid = record.linkedid
            elif isinstance(effect, Unrouted):
                work = self._call_log.unrouted_call(effect.call)
                linkedid = effect.call.linkedid
            elif isinstance(effect, Reassign):
                work = self._reassign.transferred(effect.linkedid, effect.line, effect.employee_id, effect.kind,
                                                  effect.external)
                linkedid = effect.linkedid
            else:
                continue
            # One call's effects apply in order: A->B then B->C leaves C responsible.
            self._pending.start(f"tracking:{linkedid}", work, in_order=True)

    async def _offer_again(self, linkedid: str, offers: Callable[[str], Awaitable[Offer | None]]) -> None:
        try:
            offer = await offers(linkedid)
        except CrmError as error:
            log.warning("call %s: found in progress, its offer could not be read: %s", linkedid, error)
            return
        if offer is not None:
            self._notifier.publish(OfferMade(offer))

    def _publish(self, rules: Rules, before: TrackerState, event: TrackerEvent, effects: tuple) -> None:
        try:
            for change in live_events(rules, before, self._state, event, effects):
                self._notifier.publish(change)
        except Exception:  # the call windows must never stop call tracking
            log.exception("live call events for %s failed", type(event).__name__)
