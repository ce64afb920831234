"""Two `agi-daemon run` processes (two PBXs) on one PostgreSQL database drain one outbox: each
command is applied exactly once; one of them killed with -9 while both drain, the other
finishes the queue, nothing lost, nothing twice."""
from __future__ import annotations

import asyncio
import os
import re
import sys
from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import make_url

from agi_daemon.core.commands import CallReport, CreateCallRecords, LogCall
from agi_daemon.crm import outbox_store
from agi_daemon.crm.embedded import EmbeddedCrm
from tests.asterisk.sandbox import closed_port
from tests.crm.conftest import _plan
from tests.crm.test_outbox import call_of
from tests.daemon_harness import write_config
from tests.fakes.polling import eventually
from tests.faults.outbox_harness import daemon_process, hang_up, route

CALLS = 2000


def phone(n: int) -> str:
    return f"+336130{n:05d}"


async def leave_backlog(url: str) -> None:
    """What the daemons find pending at start: each call's records, then its call log."""
    def leave(conn):
        now = datetime.now(UTC)
        for n in range(CALLS):
            outbox_store.add(conn, CreateCallRecords(_plan(phone(n), f"pbx1.{n}")), now)
            outbox_store.add(conn, LogCall(call_of(f"pbx1.{n}", phone(n)), CallReport.HANGUP, phone(n)), now)

    async with EmbeddedCrm(url) as store:
        await store.transaction("test: a backlog", leave, write=True)


def query(url: str, sql: str) -> list[tuple]:
    parsed = make_url(url)
    with psycopg.connect(host=parsed.host, port=parsed.port, user=parsed.username, dbname=parsed.database) as db:
        return db.execute(sql).fetchall()


async def start(tmp_path, name: str, url: str):
    directory = tmp_path / name
    directory.mkdir()
    config = write_config(directory, ami=(closed_port(), "agi-daemon", "unused"), database=url)
    log = (directory / "stderr.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agi_daemon", "run", "-c", str(config),
        stderr=log, cwd=directory, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log.close()
    return process, directory / "stderr.log"


@pytest.mark.databases("postgresql")
async def test_one_of_two_daemons_killed_while_both_drain_the_other_finishes_nothing_lost_nothing_twice(
    tmp_path, crm_database_url
):
    url = crm_database_url
    await leave_backlog(url)
    first, first_log = await start(tmp_path, "pbx1", url)
    second, second_log = await start(tmp_path, "pbx2", url)
    try:
        for log in (first_log, second_log):  # both took up the backlog
            await eventually(lambda log=log: re.search(r"outbox: \d+ CRM commands left pending", log.read_text()),
                             timeout=20)
        delivered_before = query(url, "SELECT count(*) FROM outbox WHERE status = 'delivered'")[0][0]
        first.kill()  # kill -9, in the middle of the drain
        await first.wait()
        assert delivered_before < 2 * CALLS, "the backlog was drained before the kill: make it longer"
        await eventually(lambda: query(url, "SELECT count(*) FROM outbox WHERE status <> 'delivered'")[0][0] == 0,
                         timeout=90)
    finally:
        for process in (first, second):
            if process.returncode is None:
                process.kill()
                await process.wait()

    leads = query(url, "SELECT created_by_call, count(*) FROM leads GROUP BY created_by_call")
    calls = query(url, "SELECT linkedid, count(*) FROM calls GROUP BY linkedid")
    assert sorted(linkedid for linkedid, _ in leads) == sorted(f"pbx1.{n}" for n in range(CALLS))
    assert sorted(linkedid for linkedid, _ in calls) == sorted(f"pbx1.{n}" for n in range(CALLS))
    assert {count for _, count in leads} == {1} and {count for _, count in calls} == {1}
    unlinked = query(url, "SELECT count(*) FROM calls WHERE entity_id IS NULL")
    assert unlinked == [(0,)]  # each call logged on its lead: records first, then the log, whoever applied them


def named(config, pbx_id: str):
    config.write_text(config.read_text().replace("  crm_deadline_ms:", f"  pbx_id: {pbx_id}\n  crm_deadline_ms:", 1))
    return config


@pytest.mark.databases("postgresql")
async def test_call_whose_daemon_is_killed_and_restarted_mid_call_is_logged_once_beside_the_other_pbx_s_call(
    tmp_path, crm_database_url
):
    """PBX paris routes a new caller, its daemon is killed with -9 while the call is up and
    started again; PBX lyon meanwhile has a call with the same linkedid. The hangup handler's
    report reaches the restarted daemon (twice: a handler retried): each PBX's call is logged
    once, on its own lead."""
    url, linkedid = crm_database_url, "1764640000.7"
    paris_number, lyon_number = phone(11), phone(12)
    configs = {}
    for name in ("paris", "lyon"):
        (tmp_path / name).mkdir()
        configs[name] = named(write_config(tmp_path / name, ami=(closed_port(), "agi-daemon", "unused"), database=url),
                              name)
    async with daemon_process(configs["lyon"]) as lyon:
        async with daemon_process(configs["paris"]) as paris:
            assert (await route(paris.port, linkedid, paris_number))[0] == "ok"
            paris.process.kill()
        assert (await route(lyon.port, linkedid, lyon_number))[0] == "ok"
        async with daemon_process(configs["paris"]) as paris:
            await hang_up(paris.port, linkedid, paris_number, "ok")
            await hang_up(paris.port, linkedid, paris_number, "ok")
            await hang_up(lyon.port, linkedid, lyon_number, "ok")
            await eventually(lambda: len(query(url, "SELECT id FROM calls")) == 2 and not query(
                url, "SELECT id FROM outbox WHERE status <> 'delivered'"), timeout=20)

    leads = dict(query(url, "SELECT created_by_call, id FROM leads"))
    assert sorted(leads) == [f"lyon:{linkedid}", f"paris:{linkedid}"]
    calls = query(url, "SELECT linkedid, number, entity_type, entity_id FROM calls ORDER BY linkedid")
    assert calls == [(f"lyon:{linkedid}", lyon_number, "lead", leads[f"lyon:{linkedid}"]),
                     (f"paris:{linkedid}", paris_number, "lead", leads[f"paris:{linkedid}"])]
