"""`agi-daemon run` with its CRM on PostgreSQL, as a real process: it routes calls and writes
to the shared database; without its database server it refuses to start, saying why."""
from __future__ import annotations

import asyncio
import os
import signal
import sys

import psycopg
from sqlalchemy import make_url

from tests.asterisk.sandbox import closed_port
from tests.daemon_harness import UNKNOWN, write_config
from tests.fakes.fastagi import agi_call
from tests.fakes.polling import eventually

from .test_run import read_until


async def start(config, cwd):
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agi_daemon", "run", "-c", str(config),
        stderr=asyncio.subprocess.PIPE, cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def leads_in(url: str) -> list[tuple[str, str]]:
    parsed = make_url(url)
    with psycopg.connect(host=parsed.host, port=parsed.port, user=parsed.username, dbname=parsed.database) as db:
        return db.execute("SELECT created_by_call, responsible FROM leads").fetchall()


async def test_daemon_on_postgresql_routes_a_call_and_creates_its_lead_there(tmp_path, postgresql):
    url = postgresql.create_database(migrated=False)  # the daemon migrates it at start
    config = write_config(tmp_path, ami=(closed_port(), "agi-daemon", "very-secret-ami"), database=url)
    process = await start(config, tmp_path)
    try:
        seen: list[str] = []
        port = int((await read_until(process.stderr, r"FastAGI listening on 127\.0\.0\.1:(\d+)", seen))[1])
        answer = await agi_call(port, "incoming", extension="0184880000", callerid=UNKNOWN, args=("pg.1",))
        leads = await eventually(lambda: leads_in(url))
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert answer["AGI_DAEMON_STATUS"] == "ok" and "101" in answer["AGI_DAEMON_QUEUE"]
    assert leads == [("pg.1", "alice")]


async def test_daemon_without_its_database_server_refuses_to_start_saying_why(tmp_path):
    url = f"postgresql://crm@127.0.0.1:{closed_port()}/crm"
    config = write_config(tmp_path, ami=(closed_port(), "agi-daemon", "very-secret-ami"), database=url)
    process = await start(config, tmp_path)
    _, err = await asyncio.wait_for(process.communicate(), 30)

    assert process.returncode == 1
    assert "agi-daemon: cannot start: open the CRM database: connection failed" in err.decode()
    assert "Connection refused" in err.decode()
