"""CRM work that outlives the routing answer, one task per call, owned by the app's TaskGroup.

Routing answers Asterisk as soon as the lookup is done (or its deadline passes); creating the
records goes on here. The call's hangup waits for that work before it logs the call, so the
call log always lands on the records the call created.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Coroutine

Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]

log = logging.getLogger(__name__)


class PendingWork:
    def __init__(self, spawn: Spawn) -> None:
        """`spawn` is the owner's TaskGroup.create_task: no task here is fire-and-forget."""
        self._spawn = spawn
        self._tasks: dict[str, asyncio.Task[Any]] = {}

    def start(self, key: str, work: Coroutine[Any, Any, Any]) -> "asyncio.Task[Any]":
        """Run `work` for call `key`. The coroutine must handle its own errors: a TaskGroup
        task that raises would cancel its siblings."""
        task = self._spawn(work)
        self._tasks[key] = task
        task.add_done_callback(lambda done, key=key: self._forget(key, done))
        return task

    def _forget(self, key: str, task: "asyncio.Task[Any]") -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]

    async def settle(self, key: str, timeout: float) -> bool:
        """Wait (at most `timeout` seconds) for the work of call `key`; True when none is left."""
        task = self._tasks.get(key)
        if task is None:
            return True
        done, _ = await asyncio.wait({task}, timeout=timeout)
        return bool(done)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float) -> int:
        """At shutdown: wait for every call's work; returns how many did not finish in time."""
        if not self._tasks:
            return 0
        _, pending = await asyncio.wait(set(self._tasks.values()), timeout=timeout)
        return len(pending)
