"""Run a CRM operation with a time limit per attempt, retrying when the CRM is unavailable."""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Sequence, TypeVar

from ..core.ports import CrmUnavailable

T = TypeVar("T")

DEFAULT_DELAYS = (0.2, 1.0, 5.0)
ATTEMPT_SECONDS = 10.0  # no CRM operation may hang a call's work longer than this per attempt


async def attempt(operation: Callable[[], Awaitable[T]], timeout: float = ATTEMPT_SECONDS) -> T:
    """One try, at most `timeout` seconds: a CRM that does not answer is unavailable.

    `asyncio.timeout`, not `wait_for`: on Python 3.11 `wait_for` loses a cancellation that
    arrives as the operation finishes (a failing lookup answers at once), so a stop or a dry
    run that cancels the call's CRM work would see it go on retrying."""
    try:
        async with asyncio.timeout(timeout):
            return await operation()
    except TimeoutError:
        raise CrmUnavailable(f"no answer within {timeout:.0f} s") from None


async def with_retries(operation: Callable[[], Awaitable[T]], delays: Sequence[float] = DEFAULT_DELAYS) -> T:
    """Run `operation`; on CrmUnavailable (or no answer in time) wait the next delay and try
    again. The last failure is raised when the delays are used up; CrmRejected is raised at
    once (retrying won't help)."""
    for delay in delays:
        try:
            return await attempt(operation)
        except CrmUnavailable:
            await asyncio.sleep(delay)
    return await attempt(operation)
