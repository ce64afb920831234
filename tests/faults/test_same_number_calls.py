"""Ten simultaneous calls from the same new number (a switchboard that shows one outgoing
number): one set of records, every call logged on it."""
from __future__ import annotations

import asyncio

import pytest

from tests.asterisk.sandbox import closed_port
from tests.daemon_harness import running_daemon, write_config
from tests.faults.outbox_harness import hang_up, route
from tests.fakes.polling import eventually

SWITCHBOARD = "+33155500000"


@pytest.mark.parametrize("mode, created", [("classic", {"leads": 1}), ("simple", {"leads": 1, "deals": 1, "contacts": 1})])
async def test_ten_simultaneous_calls_from_one_new_number_create_one_set_of_records(tmp_path, crm, mode, created):
    config = write_config(tmp_path, mode=mode, ami=(closed_port(), "agi-daemon", "unused"))
    calls = [f"same.{index}" for index in range(10)]
    async with running_daemon(None, config, crm, wait_for_ami=False) as daemon:
        answers = await asyncio.gather(*(route(daemon.agi_port, linkedid, SWITCHBOARD) for linkedid in calls))
        assert [status for status, _ in answers] == ["ok"] * 10
        await asyncio.gather(*(hang_up(daemon.agi_port, linkedid, SWITCHBOARD, "ok") for linkedid in calls))

        async def all_logged():
            logged = [call for call in await crm.list_records("calls") if call["linkedid"] in calls]
            return logged if len(logged) == 10 else None

        logged = await eventually(all_logged, timeout=10)
    counts = {kind: len(await crm.list_records(kind)) for kind in created}
    assert counts == created
    [primary] = await crm.list_records("deals" if mode == "simple" else "leads")
    kind = "deal" if mode == "simple" else "lead"
    assert {call["entity"] for call in logged} == {f"{kind}:{primary['id']}"}
    assert primary["created_by_call"] in calls
