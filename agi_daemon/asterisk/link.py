"""What the AMI and ARI clients share: a link to Asterisk kept up by one long-running coroutine,
and the bounded queue between the link's reader and call tracking.

`KeptLink` runs one connection after another until it is stopped (each in a child task it
awaits, so nothing outlives it), waiting a backoff delay with jitter between them, and keeps
what an operator reads: connected, reconnects, failed attempts in a row, the last error. An
outage is logged in one line that says what is degraded, again when its reason changes or
every `log_every` seconds while it lasts, and its end once ("resumed after N s"); each retry
goes to the debug level, so an Asterisk down for a night leaves a few lines, not thousands.

`EventQueue` is filled synchronously by the reader, which never waits on the consumer: when it
is full, the item is counted in `dropped` (logged at most once a second), and `lost_since_resync`
tells the client to publish a fresh snapshot once the consumer has caught up, as after a
reconnect (a lost hangup would otherwise leave a call open forever).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

from .backoff import backoff_delay

T = TypeVar("T")


class KeptLink:
    """The reconnecting loop and its bookkeeping. `name` prefixes every log line ("AMI
    127.0.0.1:5038"); `degraded` says what an outage stops and what still works;
    `expected` are the errors of a link going down (others are logged with their traceback)."""

    def __init__(self, name: str, *, degraded: str, expected: tuple[type[BaseException], ...],
                 backoff_min: float, backoff_max: float, rng: random.Random | None,
                 log: logging.Logger, log_every: float = 600.0) -> None:
        if not 0 < backoff_min <= backoff_max:
            raise ValueError(f"{name.split()[0]} backoff needs 0 < backoff_min <= backoff_max")
        self.name = name
        self.connected = False
        self.connections = 0  # connections that came up
        self.attempt = 0  # connection attempts failed in a row
        self.last_error: str | None = None  # kept after recovery
        self._degraded = degraded
        self._expected = expected
        self._backoff_min = backoff_min
        self._backoff_max = backoff_max
        self._rng = rng if rng is not None else random.Random()
        self._log = log
        self._log_every = log_every
        self._stop: asyncio.Future[None] | None = None
        self._running = False
        self._stopped = asyncio.Event()  # set whenever the link is not running
        self._stopped.set()
        self._down_since: float | None = None  # loop time of the first failure of this outage
        self._outage_logged: tuple[float, str] | None = None  # (loop time, reason) last logged

    @property
    def reconnects(self) -> int:
        """Connections that came up after the first one."""
        return max(0, self.connections - 1)

    @property
    def stopping(self) -> bool:
        return self._stop is not None and self._stop.done()

    def stop_future(self) -> asyncio.Future[None]:
        """Done once `stop()` was called: a closed link stays closed."""
        if self._stop is None:
            self._stop = asyncio.get_running_loop().create_future()
        return self._stop

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Around the client's `run()`: refuses a second run, and `stop()` waits for its end."""
        if self._running:
            raise RuntimeError(f"{self.name}: run() is already running")
        self._running = True
        self._stopped.clear()
        try:
            yield
        finally:
            self._running = False
            self.connected = False
            self._stopped.set()

    async def keep(self, session: Callable[[], Awaitable[None]], task_name: str) -> None:
        """Run `session` (one connection, until it dies) again and again until stopped."""
        stop = self.stop_future()
        while not stop.done():
            task = asyncio.ensure_future(session())
            task.set_name(task_name)
            try:
                await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not task.done():
                    task.cancel()
                    await asyncio.wait({task})
            error = None if task.cancelled() else task.exception()  # retrieved even when stopping
            if stop.done():
                return
            delay = backoff_delay(self.attempt, rng=self._rng, minimum=self._backoff_min, maximum=self._backoff_max)
            self.attempt += 1
            self.note_failure(error, delay)
            await asyncio.wait({stop}, timeout=delay)

    async def stop(self) -> None:
        """Stop `keep()` and wait until the client's `run()` has returned."""
        stop = self.stop_future()
        if not stop.done():
            stop.set_result(None)
        await self._stopped.wait()

    def up(self) -> str:
        """A connection came up and read the live channels: the failures in a row are over (a
        link that logs in, then fails its first request, backs off as one that cannot connect).
        Returns the line that says so ("call tracking resumed after 12 s"), empty after no outage."""
        self.attempt = 0
        self.connections += 1
        if self._down_since is None:
            return ""
        down = asyncio.get_running_loop().time() - self._down_since
        self._down_since = self._outage_logged = None
        return f"call tracking resumed after {down:.0f} s"

    def note_failure(self, error: BaseException | None, retry_in: float) -> None:
        """One line for an outage, saying what is degraded; again when the reason changes or
        every `log_every` seconds while it lasts (not once per retry); the rest at debug."""
        reason = "connection closed" if error is None else describe(error)
        self.last_error = reason
        if error is not None and not isinstance(error, self._expected):
            self._log.error("%s: unexpected failure", self.name, exc_info=error)
        now = asyncio.get_running_loop().time()
        if self._down_since is None:
            self._down_since = now
        last = self._outage_logged
        if last is not None and last[1] == reason and now - last[0] < self._log_every:
            self._log.debug("%s: %s; retrying in %.1f s", self.name, reason, retry_in)
            return
        self._outage_logged = (now, reason)
        still = "" if last is None else f"still down after {now - self._down_since:.0f} s and {self.attempt} attempts, "
        self._log.warning("%s: %s%s; %s; retrying in %.1f s (backoff up to %g s)", self.name, still, reason,
                          self._degraded, retry_in, self._backoff_max)


class LinkStatus:
    """What an operator reads of an AMI or ARI client (the daemon's health, metrics and logs)."""

    _kept: KeptLink
    _inbox: EventQueue[Any]

    @property
    def connected(self) -> bool:
        """True while the link is up (logged in, or the events WebSocket open and the snapshot taken)."""
        return self._kept.connected

    @property
    def reconnects(self) -> int:
        """Connections that came up after the first one."""
        return self._kept.reconnects

    @property
    def dropped(self) -> int:
        """Events (and snapshots) thrown away because the queue was full."""
        return self._inbox.dropped

    @property
    def failed_attempts(self) -> int:
        """Connection attempts failed in a row (0 while connected)."""
        return self._kept.attempt

    @property
    def last_error(self) -> str | None:
        """The most recent connection failure, kept after recovery; None if there was none."""
        return self._kept.last_error


class EventQueue(Generic[T]):
    """The bounded queue the reader fills without waiting; `items()` reads it."""

    def __init__(self, name: str, maxsize: int, log: logging.Logger) -> None:
        if maxsize < 1:
            raise ValueError(f"{name} queue_size must be at least 1")
        self.queue: asyncio.Queue[T] = asyncio.Queue(maxsize=maxsize)
        self.dropped = 0  # items thrown away because the queue was full
        self._name = name
        self._log = log
        self._dropped_at_resync = 0
        self._drop_logged_at = float("-inf")
        self._readers: set[asyncio.Future[None]] = set()  # items() waiting for an item

    def offer(self, item: T) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.count_drop()
            return
        self.wake_readers()

    def count_drop(self) -> None:
        self.dropped += 1
        now = time.monotonic()
        if now - self._drop_logged_at >= 1.0:
            self._drop_logged_at = now
            self._log.warning("%s event queue full (%d items): %d events dropped so far",
                              self._name, self.queue.maxsize, self.dropped)

    @property
    def lost_since_resync(self) -> bool:
        """Items were dropped since the last snapshot, and the consumer has caught up since."""
        return self.dropped > self._dropped_at_resync and self.queue.qsize() < self.queue.maxsize // 2

    def resynced(self) -> None:
        """A snapshot is being taken: what was dropped until now is covered by it."""
        self._dropped_at_resync = self.dropped

    async def items(self, stop: asyncio.Future[None]) -> AsyncIterator[T]:
        """Queued items in order; ends once `stop` is done and the queue is empty."""
        queue, loop = self.queue, asyncio.get_running_loop()
        stop.add_done_callback(lambda _: self.wake_readers())
        while True:
            try:
                yield queue.get_nowait()
                continue
            except asyncio.QueueEmpty:
                if stop.done():
                    return
            # One future, answered by the next item offered or by the stop: events come one
            # burst at a time, and a task plus asyncio.wait per burst cost more than the event.
            waiter: asyncio.Future[None] = loop.create_future()
            self._readers.add(waiter)
            try:
                await waiter
            finally:
                self._readers.discard(waiter)

    def wake_readers(self) -> None:
        for waiter in self._readers:
            if not waiter.done():
                waiter.set_result(None)


def describe(error: BaseException) -> str:
    text = str(error)
    if isinstance(error, TimeoutError) and not text:
        text = "timed out"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
