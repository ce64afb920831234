"""Real calls through the Asterisk sandbox (tests/asterisk/sandbox.py): the daemon's CPU per
call beside Asterisk's, for the same calls.

`agi-daemon run` (its own process, pinned to the server core) routes the calls, follows them
over AMI as the README sets its AMI user up, and logs them from the hangup report and the
tracker. Each call: a new client calls the Paris line (national form), is routed to the queue
group (a lead is created), alice answers, the call is held `hold` seconds, then hung up.
CPU comes from /proc for both processes, from before the first call until both are quiet
after the last; Asterisk's figure includes its AMI connection to this bench (used to place
and end the calls).
"""
from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path

from agi_daemon.settings import load_settings
from tests.asterisk.ami_client import TestAmi
from tests.asterisk.sandbox import AsteriskSandbox, closed_port, configured_root, unavailable_reason
from tests.daemon_harness import rang, write_config

from .procs import Profile, Server, cpu_seconds, settle, start_daemon

PARIS_AS_DIALLED = "0184880000"


def _asterisk_pids(root_pid: int) -> list[int]:
    """The sandbox process and its descendants (unshare, chroot, asterisk)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, ppid = stat.parent.name, stat.read_text().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError):
            continue
        children.setdefault(int(ppid), []).append(int(pid))
    found, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            pass
    return total


def _logged(database: Path) -> int:
    """Calls in the CRM's call log."""
    with sqlite3.connect(database) as db:
        return db.execute("SELECT count(*) FROM calls").fetchone()[0]


async def _place_calls(sandbox: AsteriskSandbox, count: int, hold: float, database: Path) -> None:
    async with TestAmi.connect(sandbox) as ami:
        async def one(n: int) -> None:
            await asyncio.sleep(n * 0.2)  # spread, as calls arrive
            since = ami.mark()
            call = await ami.originate_incoming(PARIS_AS_DIALLED, f"+3369{n:07d}")
            await ami.wait_event(rang(call.linkedid, "101"), 10, since=since)
            await asyncio.sleep(hold)
            await ami.hangup_call(call.linkedid)

        await asyncio.gather(*(one(n) for n in range(count)))
        deadline = time.monotonic() + 30
        while _logged(database) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await ami.hangup_originated()


def measure(calls: int, *, hold: float = 2.0, skip: bool = False) -> dict[str, object]:
    root = configured_root()
    reason = "left out (--no-asterisk)" if skip else unavailable_reason(root)
    if reason is not None:
        return {"skipped": reason}
    sandbox = AsteriskSandbox(root, "bench", closed_port())
    sandbox.start()
    daemon: Server | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="agi-daemon-bench-calls-") as tmp:
            directory = Path(tmp)
            config = write_config(directory, ami=sandbox.daemon_ami)
            daemon = start_daemon(config, directory)
            sandbox.write_fallback(load_settings(config).rules)
            sandbox.set_agi_port(daemon.port)
            deadline = time.monotonic() + 15
            while "logged in as" not in daemon.log.read_text():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the daemon did not log in to AMI:\n{daemon.log.read_text()[-2000:]}")
                time.sleep(0.1)
            assert sandbox.process is not None
            asterisk = _asterisk_pids(sandbox.process.pid)
            settle(daemon.pid)
            with Profile("real-calls", daemon.pid):
                daemon_before, asterisk_before = cpu_seconds(daemon.pid), _cpu(asterisk)
                asyncio.run(_place_calls(sandbox, calls, hold, directory / "crm.sqlite3"))
                settle(daemon.pid)
            time.sleep(0.5)
            daemon_spent, asterisk_spent = cpu_seconds(daemon.pid) - daemon_before, _cpu(asterisk) - asterisk_before
            logged = _logged(directory / "crm.sqlite3")
    finally:
        if daemon is not None:
            daemon.stop()
        sandbox.stop()
    return {
        "calls": calls, "hold_s": hold, "logged": logged,
        "daemon_ms_per_call": daemon_spent / calls * 1e3,
        "asterisk_ms_per_call": asterisk_spent / calls * 1e3,
        "daemon_share": daemon_spent / asterisk_spent if asterisk_spent else None,
    }
