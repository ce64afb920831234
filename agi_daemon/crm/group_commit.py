"""Group commit: the writes waiting at one moment share one transaction.

SQLite has one writer at a time, and each transaction costs a BEGIN IMMEDIATE, a COMMIT (a WAL
append) and two thread hops, whatever it writes. When calls arrive together, their writes
(records created, calls logged, offers) queue here and one writer thread runs them in a single
transaction. When one of them fails, that transaction is rolled back and each write of the
batch runs again alone, in a transaction of its own: the failing write's caller gets its error
and the others are written as if they had come one by one. (A write is a function of the
database only, so running it again after a rollback is running it for the first time.)
A caller learns its result only once its transaction is committed, or gets the error.

On SQLite the writer thread keeps its connection between transactions (`keep_connection`):
checking a connection out of the pool and back in cost more than a small transaction's
statements. A transaction that fails gives it back; the next one takes a fresh one.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import AbstractContextManager, contextmanager
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
                 errors: Callable[[str], AbstractContextManager[None]], *, keep_connection: bool = False) -> None:
        self._engine = engine
        self._keep_connection = keep_connection
        self._connection: Connection | None = None  # the writer thread's own, between transactions
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

    def close(self) -> None:
        """In the writer thread, after its last transaction: the kept connection goes back."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        """One transaction in the writer thread: committed at the end, rolled back on error."""
        if not self._keep_connection:
            with self._engine.begin() as conn:
                yield conn
            return
        if self._connection is None:
            self._connection = self._engine.connect()
        connection = self._connection
        try:
            with connection.begin():
                yield connection
        except BaseException:
            self._connection = None  # a connection in doubt is not used again
            connection.close()
            raise

    def _transaction(self, batch: list[_Write]) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        if len(batch) > 1:
            try:
                with self._begin() as conn:
                    return [(write.future, write.work(conn), None) for write in batch]
            except Exception:  # noqa: BLE001 - rolled back: each write again on its own, below
                pass
        return [self._alone(write) for write in batch]

    def _alone(self, write: _Write) -> tuple[asyncio.Future[Any], Any, Exception | None]:
        try:
            with self._errors(write.action), self._begin() as conn:
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
