"""A burst of new callers beyond what the daemon can write at once (300 calls per second, each
then ended by its hangup report): every call is routed (`fallback` is fine), the CRM work
waits in the outbox instead of being given up, and afterwards every call has its lead and its
call log exactly once, and a known caller right after the flood is routed `ok` in time.
For 20 s, as in the original report (AGI_DAEMON_BURST_SECONDS changes it)."""
from __future__ import annotations

import asyncio
import os
import time

from tests.asterisk.sandbox import closed_port
from tests.daemon_harness import write_config
from tests.faults.outbox_harness import (
    daemon_process, hang_up, leads_by_call, leads_by_phone, logged_calls, outbox_pending, route, until,
)

RATE = 300  # new callers per second
SECONDS = float(os.environ.get("AGI_DAEMON_BURST_SECONDS", "20"))


async def test_burst_of_new_callers_is_routed_and_every_call_gets_its_lead_once_afterwards(tmp_path):
    config = write_config(tmp_path, ami=(closed_port(), "agi-daemon", "unused"))
    database = tmp_path / "crm.sqlite3"
    total = int(RATE * SECONDS)
    numbers = {f"burst.{index}": f"+3378{index:07d}" for index in range(total)}
    statuses: dict[str, str | None] = {}

    async def call(linkedid: str, phone: str) -> None:
        statuses[linkedid], _ = await route(daemon.port, linkedid, phone, timeout=10)
        await hang_up(daemon.port, linkedid, phone, statuses[linkedid])

    async with daemon_process(config) as daemon:
        started = time.monotonic()
        calls = []
        for index, (linkedid, phone) in enumerate(numbers.items()):  # open loop: on schedule, whatever the answers
            await asyncio.sleep(max(0.0, started + index / RATE - time.monotonic()))
            calls.append(asyncio.create_task(call(linkedid, phone)))
        await asyncio.wait_for(asyncio.gather(*calls), 60)
        assert set(statuses.values()) <= {"ok", "fallback"}, "a call was not routed"

        def done() -> bool:
            return len(logged_calls(database)) == total and outbox_pending(database) == 0

        assert await until(done, 90, every=0.5)
        # right after the flood, a caller of the burst is a known client: routed `ok`, in time
        status, took = await route(daemon.port, "after.1", numbers["burst.0"])
        assert status == "ok" and took < 0.300 + 0.100
        given_up = [line for line in daemon.seen if "given up" in line or "dead letter" in line]
        assert given_up == []

    leads = leads_by_call(database)
    assert set(leads) == set(numbers.items())  # every call its lead
    assert set(leads.values()) == {1} and set(leads_by_phone(database).values()) == {1}  # none twice
    assert all(entity is not None for entity in logged_calls(database).values())
