"""The daemon's database refuses writes for a while: locked by another program, then a full
disk (a file-size limit on the daemon's process). Calls are still routed within the deadline
+ 100 ms (`fallback` is fine); once the fault clears, every call's lead and call log are
there, once."""
from __future__ import annotations

import resource
import signal
import sqlite3

from tests.asterisk.sandbox import closed_port
from tests.daemon_harness import running_daemon, write_config
from tests.faults.outbox_harness import (
    daemon_process, hang_up, leads_by_call, leads_by_phone, logged_calls, outbox_pending, route, until,
)

DEADLINE_MS = 300
CALLS = 10


def numbers(prefix: str, first: int) -> dict[str, str]:
    return {f"{prefix}.{index}": f"+3377{first + index:07d}" for index in range(CALLS)}


async def calls_during_the_fault(port: int, calls: dict[str, str]) -> list[float]:
    """Route each call, then end it; the routing answers' delays."""
    delays = []
    for linkedid, phone in calls.items():
        status, took = await route(port, linkedid, phone)
        assert status in ("ok", "fallback"), f"{linkedid} was not routed: {status}"
        delays.append(took)
        await hang_up(port, linkedid, phone, status)
    return delays


def complete(database, calls: dict[str, str]):
    def probe() -> bool:
        logged = logged_calls(database)
        return outbox_pending(database) == 0 and all(linkedid in logged for linkedid in calls)

    return probe


async def test_database_locked_by_another_program_routes_calls_and_records_them_once_unlocked(tmp_path, crm):
    config = write_config(tmp_path, deadline_ms=DEADLINE_MS, ami=(closed_port(), "agi-daemon", "unused"))
    database = tmp_path / "crm.sqlite3"
    calls = numbers("locked", 0)
    async with running_daemon(None, config, crm, wait_for_ami=False) as daemon:
        other = sqlite3.connect(database, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
        try:
            delays = await calls_during_the_fault(daemon.agi_port, calls)
            assert leads_by_call(database) == {}  # the lock held: nothing could be written
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert max(delays) < (DEADLINE_MS + 100) / 1000
        assert await until(complete(database, calls), 30)
    leads = leads_by_call(database)
    assert set(leads) == set(calls.items()) and set(leads.values()) == {1}
    assert set(leads_by_phone(database).values()) == {1}
    assert all(logged_calls(database)[linkedid] is not None for linkedid in calls)


def _ignore_file_size_signal() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing


async def test_disk_full_routes_calls_and_records_them_once_space_is_back(tmp_path):
    config = write_config(tmp_path, deadline_ms=DEADLINE_MS, ami=(closed_port(), "agi-daemon", "unused"))
    database = tmp_path / "crm.sqlite3"
    warm_up, calls = numbers("before", 0), numbers("full", 100)
    async with daemon_process(config, preexec_fn=_ignore_file_size_signal) as daemon:
        for linkedid, phone in warm_up.items():  # the database and its WAL exist and hold data
            await route(daemon.port, linkedid, phone)
        assert await until(lambda: len(leads_by_call(database)) == CALLS, 10)
        pid = daemon.process.pid
        unlimited = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, unlimited[1]))  # no file of the daemon may grow
        try:
            delays = await calls_during_the_fault(daemon.port, calls)
            assert len(leads_by_call(database)) == CALLS  # the disk full: nothing more could be written
        finally:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, unlimited)
        assert max(delays) < (DEADLINE_MS + 100) / 1000
        assert await until(complete(database, calls), 30), "".join(daemon.seen[-20:])
    leads = leads_by_call(database)
    assert set(calls.items()) <= set(leads) and set(leads.values()) == {1}
    assert set(leads_by_phone(database).values()) == {1}
