"""Warnings that a flood would repeat thousands of times a second (a host outside
`allowed_peers` connecting in a loop) become one line at once, then one summary per period
with how many more there were.

    warnings = RepeatedWarnings(log)
    warnings.warning("refused-peer", "FastAGI: refused connection from %s (not in allowed_peers)", peer)

The first warning of a kind is logged at once. Those of the same kind in the next `period`
seconds are counted; at the end of the period one line says how many there were and the last
one's text; a kind quiet for a whole period starts afresh.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Hashable

PERIOD_SECONDS = 10.0


@dataclass
class _Repeats:
    count: int
    last: str
    timer: asyncio.TimerHandle | None


class RepeatedWarnings:
    def __init__(self, logger: logging.Logger | logging.LoggerAdapter[Any], period: float = PERIOD_SECONDS) -> None:
        self._log = logger
        self._period = period
        self._open: dict[Hashable, _Repeats] = {}

    def warning(self, kind: Hashable, message: str, *args: object) -> None:
        """Log `message % args` now, or count it when a warning of `kind` was logged less than
        a period ago."""
        repeats = self._open.get(kind)
        if repeats is not None:
            repeats.count += 1
            repeats.last = message % args if args else message
            return
        self._log.warning(message, *args)
        self._open[kind] = _Repeats(0, "", self._schedule(kind))

    def flush(self) -> None:
        """Say every pending count now (at the server's stop)."""
        for kind in list(self._open):
            self._period_over(kind, again=False)

    def _schedule(self, kind: Hashable) -> asyncio.TimerHandle | None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # outside the event loop: no timer, the next warning of the kind logs
            return None
        return loop.call_later(self._period, self._period_over, kind)

    def _period_over(self, kind: Hashable, again: bool = True) -> None:
        repeats = self._open.pop(kind, None)
        if repeats is None:
            return
        if repeats.timer is not None:
            repeats.timer.cancel()
        if repeats.count:
            self._log.warning("%s (%d more like this in the last %g s)", repeats.last, repeats.count, self._period)
            if again:  # the flood goes on: keep counting for one more period
                self._open[kind] = _Repeats(0, "", self._schedule(kind))
