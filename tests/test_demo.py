"""`make demo` (scripts/demo.py): the sandboxed Asterisk, the daemon and the scripted calls."""
from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from agi_daemon.crm.embedded import EmbeddedCrm

DEMO = Path(__file__).resolve().parents[1] / "scripts" / "demo.py"

pytestmark = pytest.mark.asterisk


async def test_demo_prints_the_url_and_logins_and_its_calls_reach_the_crm(tmp_path, asterisk_root):
    env = {**os.environ, "AGI_DAEMON_DEMO_DIR": str(tmp_path / "demo")}
    process = await asyncio.create_subprocess_exec(sys.executable, str(DEMO), "--seconds", "1", env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 90)
    text = out.decode()
    assert process.returncode == 0, err.decode()[-2000:]
    assert re.search(r"open http://127\.0\.0\.1:\d+/", text) and "password demo-password" in text
    assert "blind-transferred to bob" in text and "ringing on alice's window" in text
    async with EmbeddedCrm(f"sqlite:///{tmp_path}/demo/crm.sqlite3") as crm:
        calls = await crm.list_records("calls")
        leads = await crm.list_records("leads")
    assert len(calls) == 3  # the offer call was hung up at the end, and logged too
    assert [lead["responsible"] for lead in leads] == ["bob"]  # R10 after the transfer
