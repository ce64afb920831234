"""The call windows' live side: the call board, and who is watching it.

`LiveCalls` is the notifier the services publish to (ports.Notifier): it folds each event
into the board and wakes the windows of the employees whose calls changed. Each open window
(a WebSocket) holds a `Watch`: a one-slot wake-up, so a burst of events costs one redraw.
"""
from __future__ import annotations

import asyncio
import logging

from ..core.call_board import CallBoard
from ..core.live_calls import CallEvent

log = logging.getLogger(__name__)


class Watch:
    def __init__(self, employee: str) -> None:
        self.employee = employee
        self._changed = asyncio.Event()

    def wake(self) -> None:
        self._changed.set()

    async def changed(self, timeout: float) -> bool:
        """Wait for a change (True) or the timeout (False)."""
        try:  # asyncio.timeout, not wait_for, which on Python 3.11 can lose a cancellation
            async with asyncio.timeout(timeout):
                await self._changed.wait()
        except TimeoutError:
            return False
        self._changed.clear()
        return True


class LiveCalls:
    def __init__(self) -> None:
        self.board = CallBoard()
        self._watches: dict[str, set[Watch]] = {}

    def publish(self, event: CallEvent) -> None:
        try:
            changed = self.board.apply(event)
        except Exception:  # the call windows must never stop call tracking
            log.exception("the call board could not apply %s", type(event).__name__)
            return
        self._wake(changed)

    def _wake(self, employees: set[str]) -> None:
        for employee in employees:
            for watch in self._watches.get(employee, ()):
                watch.wake()

    def close(self, linkedid: str, employee: str) -> bool:
        """The agent closes an ended call's card; False when it is not on their window."""
        changed = self.board.close(linkedid, employee)
        self._wake(changed)
        return bool(changed)

    def watch(self, employee: str) -> Watch:
        watch = Watch(employee)
        self._watches.setdefault(employee, set()).add(watch)
        return watch

    def unwatch(self, watch: Watch) -> None:
        watches = self._watches.get(watch.employee)
        if watches is not None:
            watches.discard(watch)
            if not watches:
                del self._watches[watch.employee]
