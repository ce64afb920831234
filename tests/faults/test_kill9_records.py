"""kill -9 of `agi-daemon run` under FastAGI load, then a restart: every call answered `ok` has
its lead exactly once without anything else happening, and once the hangup reports come in,
every call has its lead and its call log exactly once (the intent rebuilt from the report
where the daemon died before it was stored)."""
from __future__ import annotations

import asyncio
import itertools
import random

from tests.asterisk.sandbox import closed_port
from tests.daemon_harness import write_config
from tests.faults.outbox_harness import (
    daemon_process, hang_up, leads_by_call, leads_by_phone, logged_calls, outbox_pending, route, until,
)

CALLERS = 24  # concurrent FastAGI peers placing calls one after the other


def number(index: int) -> str:
    return f"+3369{index:07d}"


async def test_kill9_under_load_then_restart_keeps_every_answered_call_s_records_exactly_once(tmp_path):
    config = write_config(tmp_path, ami=(closed_port(), "agi-daemon", "unused"))
    database = tmp_path / "crm.sqlite3"
    answers: dict[str, tuple[str, str | None]] = {}  # linkedid -> (number, status)
    counter = itertools.count()

    async with daemon_process(config) as daemon:
        async def caller() -> None:
            while daemon.process.returncode is None:
                index = next(counter)
                linkedid = f"k9.{index}"
                answers[linkedid] = (number(index), None)
                status, _ = await route(daemon.port, linkedid, number(index), timeout=2)
                answers[linkedid] = (number(index), status)
                if status is None:
                    return

        callers = [asyncio.create_task(caller()) for _ in range(CALLERS)]
        await asyncio.sleep(random.uniform(1.0, 2.0))  # a random instant of the load
        daemon.process.kill()
        await asyncio.wait_for(asyncio.gather(*callers), 10)

    answered_ok = {linkedid: phone for linkedid, (phone, status) in answers.items() if status == "ok"}
    assert len(answered_ok) > 50, "the load did not get going before the kill"

    async with daemon_process(config) as daemon:
        # nothing but the restart: what was answered `ok` was stored first, and is delivered
        assert await until(lambda: outbox_pending(database) == 0, 20)
        leads = leads_by_call(database)
        assert {(linkedid, phone) for linkedid, phone in answered_ok.items()} <= set(leads)
        assert max(leads.values()) == 1 and max(leads_by_phone(database).values()) == 1

        # then every call ends: the hangup handler reports each, answered or not
        calls = list(answers.items())
        for start in range(0, len(calls), 50):
            await asyncio.gather(*(hang_up(daemon.port, linkedid, phone, status)
                                   for linkedid, (phone, status) in calls[start:start + 50]))
        assert await until(lambda: len(logged_calls(database)) == len(answers) and outbox_pending(database) == 0, 30)

    leads = leads_by_call(database)
    assert set(leads) == {(linkedid, phone) for linkedid, (phone, _) in answers.items()}  # none lost
    assert set(leads.values()) == {1} and set(leads_by_phone(database).values()) == {1}  # none twice
    logged = logged_calls(database)
    assert all(entity is not None and entity.startswith("lead:") for entity in logged.values())
