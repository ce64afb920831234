"""The CRM commands the web pages submitted that outlive their request (calls.py's "create"
buttons): Outbox.submit retries until the store can take the command (a locked database, a
full disk), and a request waits for it only so long."""
from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, Callable, Coroutine

log = logging.getLogger(__name__)

SUBMISSIONS_DRAIN_S = 2.0  # how long close() lets the pages' submissions still waiting for the store finish


class Submissions:
    """The CRM commands the pages submitted that outlive the request: Outbox.submit retries
    until the store can take the command (a locked database, a full disk), and a request
    waits for it only so long (calls.CREATED_WAIT_S). One task per key, owned here, its error
    always retrieved: a second click joins the first's task instead of adding another retry
    loop, and close() lets them finish a moment, then cancels what is left."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, key: str, work: Callable[[], Coroutine[Any, Any, None]]) -> asyncio.Task[None]:
        """The task submitting `key`'s command: the one in flight, else a new one running `work()`."""
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(work())
            self._tasks[key] = task
            task.add_done_callback(functools.partial(self._forget, key))
        return task

    def _forget(self, key: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled() and task.exception() is not None:  # retrieved here; the requests got it too
            log.warning("web: submitting %s failed: %s", key, task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def close(self, timeout: float = SUBMISSIONS_DRAIN_S) -> None:
        tasks = set(self._tasks.values())
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
            log.warning("web: %d CRM commands still waiting for the store at the stop were given up", len(late))
