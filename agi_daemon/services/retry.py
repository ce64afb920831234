"""Retry a CRM operation that failed with CrmUnavailable, with growing pauses."""
from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Sequence, TypeVar

from ..core.ports import CrmUnavailable

T = TypeVar("T")

DEFAULT_DELAYS = (0.2, 1.0, 5.0)


async def with_retries(operation: Callable[[], Awaitable[T]], delays: Sequence[float] = DEFAULT_DELAYS) -> T:
    """Run `operation`; on CrmUnavailable wait the next delay and try again. The last failure
    is raised when the delays are used up; CrmRejected is raised at once (retrying won't help)."""
    for delay in delays:
        try:
            return await operation()
        except CrmUnavailable:
            await asyncio.sleep(delay)
    return await operation()
