"""Reconnection delays: exponential growth with full jitter, as pure functions.

Attempt 0 is the first retry after a failure (the counter resets after a successful login).
Its delay is drawn uniformly in [minimum, ceiling(attempt)], where the ceiling doubles from
``minimum`` at each attempt and stops at ``maximum``. Full jitter keeps many daemons that lost
the same Asterisk from reconnecting in lock-step.
"""
from __future__ import annotations

import random


def backoff_ceiling(attempt: int, *, minimum: float, maximum: float) -> float:
    """The largest delay allowed for this attempt: minimum * 2**attempt, capped at maximum."""
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    if not 0 < minimum <= maximum:
        raise ValueError("backoff needs 0 < minimum <= maximum")
    if attempt >= 64:  # 2**64 * minimum is past any sensible maximum
        return maximum
    return min(maximum, minimum * 2.0**attempt)


def backoff_delay(attempt: int, *, rng: random.Random, minimum: float, maximum: float) -> float:
    """A delay in seconds, uniform in [minimum, backoff_ceiling(attempt)]."""
    return rng.uniform(minimum, backoff_ceiling(attempt, minimum=minimum, maximum=maximum))
