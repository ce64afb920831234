"""Reconnection delays as a pure policy, with a seeded random generator."""
from __future__ import annotations

import random
import statistics

import pytest

from agi_daemon.asterisk.backoff import backoff_ceiling, backoff_delay

MINIMUM, MAXIMUM = 0.5, 30.0


def test_ceiling_doubles_from_minimum_then_stays_at_cap() -> None:
    ceilings = [backoff_ceiling(a, minimum=MINIMUM, maximum=MAXIMUM) for a in range(10)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    assert backoff_ceiling(10_000, minimum=MINIMUM, maximum=MAXIMUM) == MAXIMUM


def test_delays_stay_within_minimum_and_ceiling_and_grow_on_average() -> None:
    rng = random.Random(20240601)
    means = []
    for attempt in range(9):
        delays = [backoff_delay(attempt, rng=rng, minimum=MINIMUM, maximum=MAXIMUM)
                  for _ in range(500)]
        ceiling = backoff_ceiling(attempt, minimum=MINIMUM, maximum=MAXIMUM)
        assert all(MINIMUM <= d <= ceiling <= MAXIMUM for d in delays)
        means.append(statistics.fmean(delays))
    assert all(a < b for a, b in zip(means[:6], means[1:7], strict=True))  # grows until the cap
    assert means[-1] == pytest.approx((MINIMUM + MAXIMUM) / 2, rel=0.1)


def test_same_seed_gives_same_delays() -> None:
    first = [backoff_delay(a, rng=random.Random(7), minimum=MINIMUM, maximum=MAXIMUM)
             for a in range(6)]
    second = [backoff_delay(a, rng=random.Random(7), minimum=MINIMUM, maximum=MAXIMUM)
              for a in range(6)]
    assert first == second


@pytest.mark.parametrize(("attempt", "minimum", "maximum"), [(-1, 0.5, 30), (0, 0, 30), (0, 5, 1)])
def test_invalid_policy_raises(attempt: int, minimum: float, maximum: float) -> None:
    with pytest.raises(ValueError):
        backoff_ceiling(attempt, minimum=minimum, maximum=maximum)
