"""CRM work that outlives the routing answer, keyed by call, owned by the app's TaskGroup.

Routing answers Asterisk as soon as the lookup is done (or its deadline passes); creating the
records goes on here. The call's hangup waits for that work before it logs the call, so the
call log always lands on the records the call created.
"""
from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, Callable, Coroutine

Spawn = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]

log = logging.getLogger(__name__)


class PendingWork:
    def __init__(self, spawn: Spawn) -> None:
        """`spawn` is the owner's TaskGroup.create_task: no task here is fire-and-forget."""
        self._spawn = spawn
        self._tasks: dict[str, set[asyncio.Task[Any]]] = {}

    def start(self, key: str, work: Coroutine[Any, Any, Any], *, in_order: bool = False) -> "asyncio.Task[Any]":
        """Run `work` for `key` (a call's linkedid, or a name derived from it). With
        `in_order`, it starts only once the work already running for `key` is done, so one
        call's effects apply in the order they happened. An error in `work` is logged here:
        a TaskGroup task that raised would cancel its siblings, the whole daemon."""
        earlier = set(self._tasks.get(key, ())) if in_order else set()
        task = self._spawn(self._guarded(key, self._after(earlier, work) if earlier else work))
        self._tasks.setdefault(key, set()).add(task)
        task.add_done_callback(functools.partial(self._forget, key))
        return task

    @staticmethod
    async def _guarded(key: str, work: Coroutine[Any, Any, Any]) -> Any:
        try:
            return await work
        except Exception:
            log.exception("CRM work %s crashed", key)
            return None

    @staticmethod
    async def _after(earlier: set["asyncio.Task[Any]"], work: Coroutine[Any, Any, Any]) -> Any:
        try:
            await asyncio.wait(earlier)
        except BaseException:
            work.close()
            raise
        return await work

    def _forget(self, key: str, task: "asyncio.Task[Any]") -> None:
        tasks = self._tasks.get(key)
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                del self._tasks[key]

    def running(self, key: str) -> bool:
        """Whether work for `key` is still running."""
        return key in self._tasks

    def _all(self) -> set["asyncio.Task[Any]"]:
        return {task for tasks in self._tasks.values() for task in tasks}

    async def settle(self, key: str, timeout: float) -> bool:
        """Wait (at most `timeout` seconds) for all the work of `key`; True when none is left."""
        tasks = set(self._tasks.get(key, ()))
        if not tasks:
            return True
        _, late = await asyncio.wait(tasks, timeout=timeout)
        return not late

    @property
    def in_flight(self) -> int:
        return len(self._all())

    async def drain(self, timeout: float) -> int:
        """At shutdown: wait for every call's work, cancel what is still running after
        `timeout` seconds; returns how many were cancelled."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Work started during the drain (a last tracking effect) gets the same deadline.
        while self._tasks and (left := deadline - loop.time()) > 0:
            await asyncio.wait(self._all(), timeout=left)
        late = self._all()
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
        return len(late)
