"""Who is asking: sessions, logins (rate-limited), CSRF tokens, and what each viewer may see.

Sessions live in the daemon's memory (a restart logs everyone out); the cookie holds only a
random token, HttpOnly and SameSite=Strict. Each session remembers the stamp of the password it
was opened with (crm/users.py): once the employee's password is set again, the session ends. Every state-changing request carries the
session's CSRF token (the form field `csrf` or the header `X-CSRF-Token`); the login form
carries the token of its own cookie (double submit).
"""
from __future__ import annotations

import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

SESSION_COOKIE = "agi_daemon_session"
LOGIN_COOKIE = "agi_daemon_login"
SESSION_SECONDS = 12 * 3600
MAX_FAILURES = 5
FAILURE_WINDOW_SECONDS = 300.0
MAX_TRACKED = 10_000  # addresses and employee ids with failed logins in the window, at most


@dataclass(frozen=True)
class Viewer:
    """A logged-in employee."""

    employee: str
    name: str
    admin: bool
    csrf: str


def visible_calls(who: Viewer, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The calls of `found` (call-log rows) `who` may see: an admin, all; an agent, those they
    were rung for, answered or were transferred (README, "Who sees what")."""
    if who.admin:
        return found
    return [c for c in found if c["answered_by"] == who.employee or who.employee in c["employees"]]


@dataclass
class _Session:
    employee: str
    csrf: str
    expires: float
    password: str | None  # the stamp of the password it was opened with
    opened: float = 0.0  # on the sessions' clock


class Sessions:
    def __init__(self, *, lifetime: float = SESSION_SECONDS, clock=time.monotonic) -> None:
        self._sessions: dict[str, _Session] = {}
        self._lifetime = lifetime
        self._clock = clock

    def open(self, employee: str, password: str | None = None) -> tuple[str, str]:
        """A new session of `employee`, logged in with the password of stamp `password`:
        (cookie token, CSRF token)."""
        self._expire()
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self._clock()
        self._sessions[token] = _Session(employee, csrf, now + self._lifetime, password, now)
        return token, csrf

    def now(self) -> float:
        """The sessions' clock, for `end_changed`'s `asked_at`."""
        return self._clock()

    def employees(self) -> set[str]:
        """The employees with a session open."""
        self._expire()
        return {s.employee for s in self._sessions.values()}

    def end_changed(self, passwords: dict[str, str], asked: set[str], asked_at: float) -> list[str]:
        """End the sessions opened with a password their employee no longer has: `passwords`
        (employee -> the stamp of their current password; one of `asked` missing from it has
        none) was read from `asked_at` on. Only sessions of `asked` opened before `asked_at`
        are judged: a login meanwhile may have used a password set after the read. Returns
        the tokens of the sessions ended."""
        ended = [t for t, s in self._sessions.items()
                 if s.employee in asked and s.opened <= asked_at and passwords.get(s.employee) != s.password]
        for token in ended:
            del self._sessions[token]
        return ended

    def find(self, token: str | None) -> tuple[str, str] | None:
        """(employee, CSRF token) of a live session."""
        session = self._sessions.get(token or "")
        if session is None or session.expires < self._clock():
            return None
        return session.employee, session.csrf

    def close(self, token: str | None) -> None:
        self._sessions.pop(token or "", None)

    def _expire(self) -> None:
        now = self._clock()
        for token in [t for t, s in self._sessions.items() if s.expires < now]:
            del self._sessions[token]


@dataclass
class LoginThrottle:
    """At most MAX_FAILURES failed logins per FAILURE_WINDOW_SECONDS, per address and per
    employee (both counts must allow): a password cannot be guessed by brute force, from one
    address or from many. The price: wrong passwords for an employee's id lock that employee
    out for the window, from anywhere (README). Only the keys with failures in the window are
    kept: what a client types cannot make the daemon's memory grow."""

    clock: object = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def allowed(self, *keys: str) -> bool:
        return all(len(self._recent(key)) < MAX_FAILURES for key in keys)

    def failed(self, *keys: str) -> None:
        if len(self._failures) >= MAX_TRACKED:
            self._sweep()
        for key in keys:
            self._failures.setdefault(key, deque()).append(self.clock())  # type: ignore[operator]

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._failures.pop(key, None)

    def _recent(self, key: str) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        horizon = self.clock() - FAILURE_WINDOW_SECONDS  # type: ignore[operator]
        while times and times[0] < horizon:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def _sweep(self) -> None:
        """Forget the keys whose failures are past the window; then, down to three quarters of
        MAX_TRACKED, the oldest (a flood from many addresses: their locks end early, never the
        daemon). Three quarters: the next sweep is that many failures away."""
        for key in list(self._failures):
            self._recent(key)
        while len(self._failures) > MAX_TRACKED * 3 // 4:
            del self._failures[next(iter(self._failures))]


def same_token(given: str | None, expected: str | None) -> bool:
    return bool(given) and bool(expected) and hmac.compare_digest(str(given), str(expected))


def new_login_token() -> str:
    return secrets.token_urlsafe(24)
