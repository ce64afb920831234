"""Group commit: the writes waiting at one moment share one transaction.

SQLite has one writer at a time, and each transaction costs a BEGIN IMMEDIATE, a COMMIT (a WAL
append) and two thread hops, whatever it writes. When calls arrive together, their writes
(records created, calls logged, offers) queue here and one writer thread runs them in a single
transaction. When one of them fails, that transaction is rolled back and each write of the
batch runs again alone, in a transaction of its own: the failing write's caller gets its error
and the others are written as if they had come one by one. (A write is a function of the
database only, so running it again after a rollback is running it for the first time.)
A caller learns its result only once its transaction is committed, or gets the error.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine

# One transaction holds at most this many writes: a long queue is drained in several.
MAX_WRITES = 64


@dataclass
class _Write:
    action: str
    work: Callable[[Connection], Any]
    future: asyncio.Future[Any]


class GroupCommit:
    """`submit(action, work)` from the event loop; `work(connection)` runs in the writer
    thread, inside the batch's transaction. `errors(action)` translates database errors."""

    def __init__(self, engine: Engine, executor: Executor,
                 errors: Callable[[str], AbstractContextManager[None]]) -> None:
        self._engine = engine
        self._executor = executor
        self._errors = errors
        self._lock = threading.Lock()
        self._queue: list[_Write] = []
        self._scheduled = False

    def submit(self, action: str, work: Callable[[Connection], Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        write = _Write(action, work, loop.create_future())
        with self._lock:
            self._queue.append(write)
            schedule, self._scheduled = not self._scheduled, True
        if schedule:
            try:
                self._executor.submit(self._drain, loop)
            except RuntimeError:  # the executor is shut down: the CRM is closing
                with self._lock:
                    self._queue.remove(write)
                    self._scheduled = bool(self._queue)
                raise
        return write.future

    def abandon(self, error: Exception) -> int:
        """From the event loop, when the writer thread will not run again (the CRM closed
        before it could): the writes still queued fail with `error`. Returns how many."""
        with self._lock:
            left, self._queue = self._queue, []
            self._scheduled = False
        for write in left:
            if not write.future.done():
                write.future.set_exception(error)
        return len(left)

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """In the writer thread: run what is queued, a transaction per MAX_WRITES."""
        while True:
            with self._lock:
                batch, self._queue = self._queue[:MAX_WRITES], self._queue[MAX_WRITES:]
                if not batch:
                    self._scheduled = False
                    return
            outcomes = self._transaction(batch)
            loop.call_soon_threadsafe(_deliver, outcomes)

    def _transaction(self, batch: list[_Write]) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        if len(batch) > 1:
            try:
                with self._engine.begin() as conn:
                    return [(write.future, write.work(conn), None) for write in batch]
            except Exception:  # noqa: BLE001 - rolled back: each write again on its own, below
                pass
        return [self._alone(write) for write in batch]

    def _alone(self, write: _Write) -> tuple[asyncio.Future[Any], Any, Exception | None]:
        try:
            with self._errors(write.action), self._engine.begin() as conn:
                return write.future, write.work(conn), None
        except Exception as error:
            return write.future, None, error


def _deliver(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, value, error in outcomes:
        if future.done():
            continue
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)
