"""Web sessions end when their employee's password is set again (`agi-daemon user
set-password`), whichever process set it; a store that cannot be read ends none."""
from __future__ import annotations

import asyncio
import logging
import weakref
from types import SimpleNamespace

from aiohttp import web

from agi_daemon.core.ports import CrmUnavailable
from agi_daemon.web.auth import Sessions
from agi_daemon.web.login import end_sessions_of_changed_passwords
from agi_daemon.web.server import CONTEXT, SESSIONS, SOCKETS


def test_only_sessions_opened_with_a_password_their_employee_no_longer_has_end():
    sessions = Sessions(clock=Ticks())
    old_alice, _ = sessions.open("alice", "stamp-1")
    new_alice, _ = sessions.open("alice", "stamp-2")
    bob, _ = sessions.open("bob", "stamp-b")
    carol, _ = sessions.open("carol", "stamp-c")
    ended = sessions.end_changed({"alice": "stamp-2", "bob": "stamp-b"}, {"alice", "bob", "carol"},
                                 sessions.now())  # carol's password was removed
    assert set(ended) == {old_alice, carol}
    assert sessions.find(old_alice) is None and sessions.find(carol) is None
    assert sessions.find(new_alice)[0] == "alice" and sessions.find(bob)[0] == "bob"
    assert sessions.employees() == {"alice", "bob"}


class Ticks:
    """A clock that moves one second at each reading."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def test_a_session_opened_while_the_passwords_were_read_is_not_judged_by_that_read():
    """bob's session keeps the check running; alice logs in (with a password set just now)
    while the read is in flight: the read knows nothing of her session, it must not end it."""
    sessions = Sessions(clock=Ticks())
    sessions.open("bob", "stamp-b")
    asked, asked_at = sessions.employees(), sessions.now()
    alice, _ = sessions.open("alice", "stamp-new")  # meanwhile
    assert sessions.end_changed({"bob": "stamp-b"}, asked, asked_at) == []
    assert sessions.find(alice) is not None


class FlakyPasswords:
    """The passwords' stamps, unreadable for the first `failures` reads."""

    def __init__(self, stamps: dict[str, str], failures: int) -> None:
        self.stamps_now, self.failures, self.asked = stamps, failures, []

    async def stamps(self, employees):
        self.asked.append(set(employees))
        if self.failures:
            self.failures -= 1
            raise CrmUnavailable("database is locked")
        return {e: s for e, s in self.stamps_now.items() if e in employees}


async def test_a_store_that_cannot_be_read_ends_no_session_and_is_read_again(caplog):
    passwords = FlakyPasswords({"alice": "stamp-2", "bob": "stamp-b"}, failures=3)
    app = web.Application()
    app[CONTEXT] = SimpleNamespace(users=passwords)
    app[SESSIONS] = sessions = Sessions()
    app[SOCKETS] = weakref.WeakKeyDictionary()
    alice, _ = sessions.open("alice", "stamp-1")
    bob, _ = sessions.open("bob", "stamp-b")
    with caplog.at_level(logging.WARNING, logger="agi_daemon.web.login"):
        checking = asyncio.create_task(end_sessions_of_changed_passwords(app, every=0.01))
        try:
            for _ in range(500):
                if len(passwords.asked) > 3:
                    break
                assert sessions.find(alice) is not None  # not ended while the store is unreadable
                await asyncio.sleep(0.01)
            for _ in range(100):
                if sessions.find(alice) is None:
                    break
                await asyncio.sleep(0.01)
        finally:
            checking.cancel()
    assert sessions.find(alice) is None and sessions.find(bob) is not None
    assert passwords.asked[0] == {"alice", "bob"}
    said = [r for r in caplog.records if "cannot read the passwords" in r.getMessage()]
    assert len(said) == 1  # said once, not at every turn
