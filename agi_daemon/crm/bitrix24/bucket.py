"""The portal's leaky bucket, mirrored on our side so the portal never has to say no.

Bitrix24 counts every request (a `batch` of 50 commands is one) in a counter that leaks at
`per_second`; a request arriving while the counter is above `burst` gets 503
QUERY_LIMIT_EXCEEDED. `LeakyBucket.acquire()` waits until one more request fits. It keeps a
little headroom under `burst`: requests admitted here reach the portal with some network
jitter, and two arriving closer together than they left must still fit.

Lookups on the call path are `urgent`: writes leave them a small reserve, so a caller's lookup
never queues behind a drain of queued writes.
"""
from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class LeakyBucket:
    def __init__(self, per_second: float, burst: int, *, headroom: int = 2, reserve: int | None = None,
                 clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        if per_second <= 0 or burst < 1:
            raise ValueError("per_second must be > 0 and burst >= 1")
        self.per_second = per_second
        self.capacity = max(1.0, float(burst - min(headroom, burst - 1)))
        # left to urgent requests: a tenth of the bucket, at most 5 (4 of the usual 48)
        self.reserve = float(min(5, int(self.capacity) // 10) if reserve is None else reserve)
        self._clock = clock
        self._sleep = sleep
        self._level = 0.0
        self._at = clock()
        self._lock = asyncio.Lock()

    @property
    def level(self) -> float:
        """Requests still counted against us (for the logs and the metrics)."""
        self._leak()
        return self._level

    async def acquire(self, *, urgent: bool = False) -> None:
        """Wait until one more request fits, then count it. Ordinary requests are served in
        order and leave `reserve` free; urgent ones (lookups) may use it and pass them."""
        if urgent:
            await self._take(self.capacity)
            return
        async with self._lock:
            await self._take(self.capacity - self.reserve)

    async def _take(self, limit: float) -> None:
        while True:
            self._leak()
            if self._level + 1 <= limit:
                self._level += 1
                return
            await self._sleep((self._level + 1 - limit) / self.per_second)

    def wait_seconds(self, *, urgent: bool = False) -> float:
        """How long until one more request would fit."""
        self._leak()
        limit = self.capacity if urgent else self.capacity - self.reserve
        return max(0.0, (self._level + 1 - limit) / self.per_second)

    def fill(self) -> None:
        """The portal said its bucket is full (another application shares it): count it full."""
        self._leak()
        self._level = max(self._level, self.capacity)

    def _leak(self) -> None:
        now = self._clock()
        self._level = max(0.0, self._level - (now - self._at) * self.per_second)
        self._at = now
