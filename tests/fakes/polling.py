"""Waiting in tests: poll for a positive signal with a time limit, never sleep a fixed time
and then check that something did not happen."""
from __future__ import annotations

import asyncio
import inspect
from typing import Any, Callable


async def eventually(probe: Callable[[], Any], timeout: float = 8.0, interval: float = 0.05) -> Any:
    """Call `probe()` (sync, or async) until it returns something truthy, at most `timeout`
    seconds; returns the last value, so the test's assertion shows what was there."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value or loop.time() > deadline:
            return value
        await asyncio.sleep(interval)


async def until(condition: Callable[[], Any], what: str = "the condition", timeout: float = 5.0) -> None:
    """Wait until `condition()` holds; fail naming `what` after `timeout` seconds."""
    assert await eventually(condition, timeout=timeout, interval=0.005), f"timed out waiting for {what}"
