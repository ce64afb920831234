"""The login throttle (web.auth.LoginThrottle): five failures per key lock it for the window,
and what clients type cannot make the daemon's memory grow."""
from __future__ import annotations

from agi_daemon.web.auth import FAILURE_WINDOW_SECONDS, MAX_FAILURES, MAX_TRACKED, LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_five_failures_lock_a_key_for_the_window_only():
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(MAX_FAILURES):
        assert throttle.allowed("address:203.0.113.5")
        throttle.failed("address:203.0.113.5")
    assert not throttle.allowed("address:203.0.113.5") and throttle.allowed("address:198.51.100.7")
    clock.now += FAILURE_WINDOW_SECONDS + 1
    assert throttle.allowed("address:203.0.113.5")


def test_asking_adds_nothing_and_a_flood_of_failures_keeps_a_bounded_count_of_keys():
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for n in range(3 * MAX_TRACKED):
        assert throttle.allowed(f"address:10.{n // 65536}.{n // 256 % 256}.{n % 256}")
    assert len(throttle._failures) == 0
    for n in range(3 * MAX_TRACKED):  # many addresses, one failure each, all in the window
        throttle.failed(f"address:10.{n // 65536}.{n // 256 % 256}.{n % 256}")
    assert len(throttle._failures) <= MAX_TRACKED
    clock.now += FAILURE_WINDOW_SECONDS + 1
    throttle.failed("address:203.0.113.5")
    throttle.allowed("address:10.0.0.1")
    assert len(throttle._failures) <= MAX_TRACKED
