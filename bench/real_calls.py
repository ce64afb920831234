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

from .procs import TICKS, Profile, Server, cpu_seconds, run_time, settle, start_baseline, start_daemon

PARIS_AS_DIALLED = "0184880000"
IDLE_SECONDS = 5.0


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


def _threads(pid: int) -> dict[int, tuple[float, int]]:
    """Each thread of the process: (CPU seconds, context switches: voluntary + preempted)."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            status = (task / "status").read_text()
        except OSError:
            continue
        switches = sum(int(line.split()[1]) for line in status.splitlines() if "ctxt_switches:" in line)
        found[int(task.name)] = ((int(fields[11]) + int(fields[12])) / TICKS, switches)
    return found


def _attribution(pid: int, before: dict[int, tuple[float, int]], calls: int) -> dict[str, float]:
    """The daemon's CPU per call on its event loop (the main thread) and in its other threads
    (the CRM's writer, the log writer, the lookups' fallback), and its wakeups per call."""
    after = _threads(pid)
    loop = other = 0.0
    switches = 0
    for tid, (cpu, count) in after.items():
        cpu0, count0 = before.get(tid, (0.0, 0))
        if tid == pid:
            loop += cpu - cpu0
        else:
            other += cpu - cpu0
        switches += count - count0
    return {"event_loop_ms_per_call": loop / calls * 1e3, "other_threads_ms_per_call": other / calls * 1e3,
            "context_switches_per_call": switches / calls}


def _logged(database: Path) -> int:
    """Calls in the CRM's call log."""
    with sqlite3.connect(database) as db:
        return db.execute("SELECT count(*) FROM calls").fetchone()[0]


async def _place_calls(sandbox: AsteriskSandbox, count: int, hold: float, database: Path | None, first: int = 0) -> None:
    """`count` calls from new clients, 0.2 s apart, each held `hold` s; then wait until the
    daemon logged them all (`database`), or a second for the hangup reports (no database)."""
    async with TestAmi.connect(sandbox) as ami:
        async def one(n: int) -> None:
            await asyncio.sleep((n - first) * 0.2)  # spread, as calls arrive
            since = ami.mark()
            call = await ami.originate_incoming(PARIS_AS_DIALLED, f"+3369{n:07d}")
            await ami.wait_event(rang(call.linkedid, "101"), 10, since=since)
            await asyncio.sleep(hold)
            await ami.hangup_call(call.linkedid)

        await asyncio.gather(*(one(n) for n in range(first, first + count)))
        deadline = time.monotonic() + (30 if database is not None else 1)
        while (database is None or _logged(database) < count) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await ami.hangup_originated()


def measure(calls: int, *, hold: float = 2.0, idle: float = IDLE_SECONDS, skip: bool = False) -> dict[str, object]:
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
            idle_before, idle_started = cpu_seconds(daemon.pid), time.monotonic()
            time.sleep(idle)  # logged in to AMI, no call: timers and pings only
            idle_ms_per_s = (cpu_seconds(daemon.pid) - idle_before) / (time.monotonic() - idle_started) * 1e3
            with Profile("real-calls", daemon.pid):
                threads_before = _threads(daemon.pid)
                daemon_before, asterisk_before, started = cpu_seconds(daemon.pid), _cpu(asterisk), time.monotonic()
                asyncio.run(_place_calls(sandbox, calls, hold, directory / "crm.sqlite3"))
                settle(daemon.pid)
            time.sleep(0.5)
            daemon_spent, asterisk_spent = cpu_seconds(daemon.pid) - daemon_before, _cpu(asterisk) - asterisk_before
            seconds = time.monotonic() - started
            attribution = _attribution(daemon.pid, threads_before, calls)
            logged = _logged(directory / "crm.sqlite3")
            daemon.stop()
            bare = _bare_floor(sandbox, directory, calls, hold, first=calls)
    finally:
        if daemon is not None:
            daemon.stop()
        sandbox.stop()
    return {
        "calls": calls, "hold_s": hold, "logged": logged,
        "daemon_ms_per_call": daemon_spent / calls * 1e3,
        "asterisk_ms_per_call": asterisk_spent / calls * 1e3,
        "daemon_share": daemon_spent / asterisk_spent if asterisk_spent else None,
        "seconds": seconds, "daemon_idle_ms_per_s": idle_ms_per_s,
        # what the daemon spends idle while the calls are placed and held, per call
        "idle_ms_per_call": idle_ms_per_s * seconds / calls,
        **attribution,
        "bare_ms_per_call": bare,
    }


def _bare_floor(sandbox: AsteriskSandbox, directory: Path, calls: int, hold: float, first: int) -> float:
    """The same calls with the bare responder as the FastAGI server (it answers "error": the
    dialplan's fallback rings the same queue group; its hangup handler reports to it too): ms
    of its CPU per call, the least any asyncio FastAGI server pays for a real call's two
    sessions on this machine, without tracking or a CRM."""
    bare = start_baseline("bare", directory, 'SET VARIABLE "AGI_DAEMON_STATUS" "error"')
    try:
        sandbox.set_agi_port(bare.port)
        settle(bare.pid)
        before = run_time(bare.pid)  # one thread: to the nanosecond
        asyncio.run(_place_calls(sandbox, calls, hold, None, first=first))
        settle(bare.pid)
        return (run_time(bare.pid) - before) / calls * 1e3
    finally:
        bare.stop()
