"""The client-side leaky bucket, on a hand-driven clock: no real time passes."""
from __future__ import annotations

import asyncio

import pytest

from agi_daemon.crm.bitrix24.bucket import LeakyBucket


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def bucket(time: FakeTime, per_second: float = 2, burst: int = 50) -> LeakyBucket:
    return LeakyBucket(per_second, burst, clock=time.clock, sleep=time.sleep)


async def test_burst_goes_at_once_minus_the_headroom_and_the_urgent_reserve():
    time = FakeTime()
    limited = bucket(time)
    for _ in range(44):
        await limited.acquire()
    assert time.slept == []
    await limited.acquire()
    assert time.slept == [pytest.approx(0.5)]


async def test_steady_state_is_the_portal_rate():
    time = FakeTime()
    limited = bucket(time)
    for _ in range(44 + 200):
        await limited.acquire()
    assert time.now == pytest.approx(100.0)  # 200 requests past the burst at 2/s


async def test_urgent_request_uses_the_reserve_while_writes_wait():
    time = FakeTime()
    limited = bucket(time)
    for _ in range(44):
        await limited.acquire()
    for _ in range(4):
        await limited.acquire(urgent=True)
    assert time.slept == []
    assert limited.wait_seconds(urgent=True) == pytest.approx(0.5)


@pytest.mark.parametrize(("per_second", "burst", "capacity", "reserve"), [
    (2, 50, 48, 4), (5, 250, 248, 5), (1, 1, 1, 0), (2, 3, 1, 0), (2, 12, 10, 1)])
def test_capacity_and_reserve_follow_the_plan(per_second, burst, capacity, reserve):
    limited = LeakyBucket(per_second, burst)
    assert (limited.capacity, limited.reserve) == (capacity, reserve)


async def test_full_portal_bucket_makes_the_next_write_wait():
    time = FakeTime()
    limited = bucket(time)
    limited.fill()
    assert limited.wait_seconds() == pytest.approx(2.5)  # down to 43 of 44 at 2/s
    await asyncio.wait_for(limited.acquire(), 1)
    assert time.now == pytest.approx(2.5)


def test_bucket_refuses_a_meaningless_rate():
    with pytest.raises(ValueError):
        LeakyBucket(0, 50)
