"""Fault: SIGTERM while 50 FastAGI sessions are in flight (issue 12, item 13).

What must hold: every session already answered by the daemon finishes with its routing
(status ok, the queue group), each was answered within crm_deadline_ms + 100 ms, the CRM work
they started is finished before the process exits (one lead per new caller, none twice), and
the process stops on its own with status 0.
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

from tests.asterisk.sandbox import closed_port
from tests.daemon_harness import write_config
from tests.fakes.fastagi import FakeAsterisk, header

from .daemon_process import daemon_process

SESSIONS = 50
DEADLINE_MS = 300


def caller(index: int) -> str:
    return f"+336990{index:05d}"


async def session_in_flight(port: int, index: int) -> tuple[FakeAsterisk, bytes, float]:
    """A call whose first routing command the daemon has sent, not yet answered by Asterisk."""
    asterisk = await FakeAsterisk.connect(port)
    started = time.monotonic()
    await asterisk.send(header("incoming", extension="0184880000", callerid=caller(index), args=(f"1700000000.{index}",),
                               uniqueid=f"1700000000.{index}", port=port))
    command = await asterisk.command()
    return asterisk, command, time.monotonic() - started


async def finish(asterisk: FakeAsterisk, first: bytes) -> dict[str, str]:
    """Answer the command in flight, then every other one, as Asterisk would."""
    variables = {}
    if first.startswith(b'EXEC "MSet"'):
        for assignment in first.decode().split(" ", 2)[2].strip().strip('"').split(","):
            name, _, value = assignment.partition("=")
            variables[name] = value
        await asterisk.send(b"200 result=0\n")
    else:
        await asterisk.send(b"200 result=1\n")
    variables.update(await asterisk.answer_all())
    await asterisk.close()
    return variables


async def test_sigterm_with_50_sessions_in_flight_finishes_them_and_their_crm_work_then_exits(tmp_path):
    config = write_config(tmp_path, ami=(closed_port(), "agi-daemon", "x"), deadline_ms=DEADLINE_MS)
    async with daemon_process(config) as daemon:
        in_flight = await asyncio.gather(*(session_in_flight(daemon.port, i) for i in range(SESSIONS)))
        daemon.process.terminate()
        await daemon.said(r"SIGTERM: stopping")
        answers = await asyncio.gather(*(finish(asterisk, first) for asterisk, first, _ in in_flight))
        async with asyncio.timeout(20):
            code = await daemon.process.wait()

    assert code == 0
    assert [answer.get("AGI_DAEMON_STATUS") for answer in answers] == ["ok"] * SESSIONS
    assert {answer.get("AGI_DAEMON_QUEUE") for answer in answers} == {"Local/101@employees&Local/102@employees"}
    assert max(took for _, _, took in in_flight) < (DEADLINE_MS + 100) / 1000
    listed = subprocess.run([sys.executable, "-m", "agi_daemon", "crm", "list", "leads", "-c", str(config), "--json"],
                            capture_output=True, text=True, timeout=30, check=True)
    leads = json.loads(listed.stdout)
    assert sorted(phone for lead in leads for phone in lead["phones"]) == sorted(caller(i) for i in range(SESSIONS))
    assert "cancelled" not in daemon.log and "Traceback" not in daemon.log
