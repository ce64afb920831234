"""What the outbox's fault tests share: `agi-daemon run` as a real process, Asterisk's side of
FastAGI sessions (routing and the hangup handler's report), and the daemon's database read
as an admin would read it (sqlite3, read-only)."""
from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import sys
import time
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.crm.bitrix24_portal import Bitrix24Portal
from tests.fakes.fastagi import agi_call

PARIS_AS_DIALLED = "0184880000"


@dataclass
class Daemon:
    process: asyncio.subprocess.Process
    port: int
    seen: list[str]


async def _read_until(stream: asyncio.StreamReader, pattern: str, seen: list[str], timeout: float = 15.0) -> re.Match:
    async with asyncio.timeout(timeout):
        while True:
            line = (await stream.readline()).decode(errors="replace")
            if not line:
                raise AssertionError(f"the daemon exited; it said:\n{''.join(seen)}")
            seen.append(line)
            if match := re.search(pattern, line):
                return match


async def _drain(stream: asyncio.StreamReader, seen: list[str]) -> None:
    while line := await stream.readline():
        seen.append(line.decode(errors="replace"))


@asynccontextmanager
async def daemon_process(config: Path, preexec_fn=None):
    """`agi-daemon run -c config`, ready to route; killed (if still alive) at the end."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agi_daemon", "run", "-c", str(config), stderr=asyncio.subprocess.PIPE,
        cwd=config.parent, env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=preexec_fn,
    )
    seen: list[str] = []
    assert process.stderr is not None
    port = int((await _read_until(process.stderr, r"FastAGI listening on 127\.0\.0\.1:(\d+)", seen))[1])
    reader = asyncio.ensure_future(_drain(process.stderr, seen))
    try:
        yield Daemon(process, port, seen)
    finally:
        if process.returncode is None:
            process.kill()
        await asyncio.wait_for(process.wait(), 10)
        await asyncio.wait_for(reader, 10)


async def route(port: int, linkedid: str, number: str, *, timeout: float = 5.0) -> tuple[str | None, float]:
    """One incoming call's routing session: (AGI_DAEMON_STATUS or None when the session
    failed, seconds until the answer)."""
    started = time.perf_counter()
    try:
        variables = await agi_call(port, "incoming", extension=PARIS_AS_DIALLED, callerid=number, args=(linkedid,),
                                   timeout=timeout)
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return None, time.perf_counter() - started
    return variables.get("AGI_DAEMON_STATUS"), time.perf_counter() - started


async def hang_up(port: int, linkedid: str, number: str, status: str | None) -> None:
    """The dialplan's hangup handler reports a missed call (status "" when the daemon never
    answered the routing session)."""
    args = (linkedid, status or "", "incoming", PARIS_AS_DIALLED, number, "NOANSWER", "", "", f"{time.time() - 20:.3f}")
    await agi_call(port, "call-end", extension="h", callerid=number, args=args)


def leads_by_call(database: Path) -> Counter[tuple[str, str]]:
    """(linkedid, phone) -> how many leads carry them."""
    with _read(database) as conn:
        rows = conn.execute(
            "SELECT l.created_by_call, p.e164 FROM leads l"
            " JOIN phones p ON p.entity_type = 'lead' AND p.entity_id = l.id"
        ).fetchall()
    return Counter((linkedid, phone) for linkedid, phone in rows)


def leads_by_phone(database: Path) -> Counter[str]:
    with _read(database) as conn:
        rows = conn.execute("SELECT e164 FROM phones WHERE entity_type = 'lead'").fetchall()
    return Counter(phone for (phone,) in rows)


def logged_calls(database: Path) -> dict[str, str | None]:
    """linkedid -> the entity the call is logged on ("lead:12") or None."""
    with _read(database) as conn:
        rows = conn.execute("SELECT linkedid, entity_type, entity_id FROM calls").fetchall()
    return {linkedid: None if kind is None else f"{kind}:{ident}" for linkedid, kind, ident in rows}


def outbox_pending(database: Path) -> int:
    with _read(database) as conn:
        return conn.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()[0]


class _read:
    def __init__(self, database: Path) -> None:
        self._conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)

    def __enter__(self) -> sqlite3.Connection:
        return self._conn

    def __exit__(self, *exc: object) -> None:
        self._conn.close()


async def until(probe, timeout: float, every: float = 0.1):
    """Poll `probe()` until it returns a truthy value; its last value (the assertion follows)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(every)


async def portal_of_the_test_pbx(*, per_second: float = 2.0, burst: int = 50) -> Bitrix24Portal:
    """The in-test Bitrix24 portal, started, with the users of the test PBX's employees (alice's
    and bob's internal phones 101 and 102), its bucket `per_second` and `burst`."""
    portal = await Bitrix24Portal(per_second=per_second, burst=burst).start()
    portal.add_user(11, "Alice Martin", inner_phone="101")
    portal.add_user(12, "Bob Durand", inner_phone="102")
    return portal
