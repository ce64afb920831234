"""Call tracking (R10, R12): folds channel events through core.tracker and performs its effects.

The fold is pure and synchronous; every effect touches the CRM, so it runs as pending work of
the call (owned by the app's TaskGroup) after the routing's own CRM work for that call.
"""
from __future__ import annotations

import logging
from typing import Any, AsyncIterable, Callable, Coroutine

from ..core.model import Rules
from ..core.tracker import CallEnded, Reassign, TrackerEvent, TrackerState, step
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
    ) -> None:
        self._rules = rules
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
        try:
            self._state, effects = step(self._rules(), self._state, event)
        except Exception:  # a tracker bug must not stop tracking every other call
            log.exception("call tracking could not apply %s; state kept", type(event).__name__)
            return
        for effect in effects:
            work: Coroutine[Any, Any, object]
            if isinstance(effect, CallEnded):
                record = effect.record
                work = self._call_log.tracked_call_ended(record, partial=effect.partial)
                linkedid = record.linkedid
            elif isinstance(effect, Reassign):
                work = self._reassign.transferred(effect.linkedid, effect.line, effect.employee_id, effect.kind)
                linkedid = effect.linkedid
            else:
                continue
            # One call's effects apply in order: A->B then B->C leaves C responsible.
            self._pending.start(f"tracking:{linkedid}", work, in_order=True)
