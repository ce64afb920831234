"""kill -9 of `agi-daemon run` with crm.adapter bitrix24 in the middle of a drain (the portal's
bucket makes the outbox deliver over several seconds), then a restart: every call's records
and registration reach the in-test portal, none twice (ORIGIN_ID looked up before creating,
EXTERNAL_CALL_ID = the linkedid)."""
from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter

from tests.asterisk.sandbox import closed_port
from tests.daemon_harness import write_config
from tests.faults.outbox_harness import daemon_process, hang_up, outbox_pending, portal_of_the_test_pbx, route, until

CALLS = 60
RATE = "rate: {per_second: 20, burst: 10}"  # 60 calls, about 3 requests each: a drain of ~8 s


def _stored_keys(database) -> set[str]:
    """The keys of every command the daemon stored in its outbox (delivered or not)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as conn:
        return {key for (key,) in conn.execute("SELECT key FROM outbox")}


def number(index: int) -> str:
    return f"+3369{index:07d}"


async def test_kill9_in_the_middle_of_a_drain_then_restart_loses_nothing_and_sends_nothing_twice(tmp_path):
    portal = await portal_of_the_test_pbx(per_second=20, burst=10)
    try:
        config = write_config(tmp_path, ami=(closed_port(), "agi-daemon", "unused"), bitrix24=portal.webhook_url)
        config.write_text(config.read_text().replace("pipelines: {general: 0, b2b: 3}",
                                                     f"pipelines: {{general: 0, b2b: 3}}, {RATE}"))
        database = tmp_path / "crm.sqlite3"
        linkedids = [f"k9b.{index}" for index in range(CALLS)]
        async with daemon_process(config) as daemon:
            answers = []
            for start in range(0, CALLS, 10):  # waves of calls, so that their lookups fit the bucket
                answers += await asyncio.gather(*(route(daemon.port, linkedid, number(start + index))
                                                  for index, linkedid in enumerate(linkedids[start:start + 10])))
            assert all(status is not None for status, _ in answers)
            await asyncio.gather(*(hang_up(daemon.port, linkedid, number(index), status)
                                   for index, (linkedid, (status, _)) in enumerate(zip(linkedids, answers, strict=True))))
            # first every call's CRM work is stored (a dropped command fails here): a call routed
            # `fallback` looks its caller up again in the background before it stores anything,
            # and its hangup session ends after STORED_WITHIN_S (asterisk/routes/call_end.py), so
            # a kill before that lookup ends loses the call; this test is about the drain. Then
            # the kill, in the middle of the drain
            durable = {f"{linkedid}/{what}" for linkedid in linkedids for what in ("records", "call/hangup")}
            assert await until(lambda: durable <= _stored_keys(database), 30), \
                f"never stored: {sorted(durable - _stored_keys(database))}"
            assert await until(lambda: len(portal.records["lead"]) >= 5, 20), "the drain did not start"
            daemon.process.kill()  # kill -9 in the middle of the drain
        in_the_middle = len(portal.records["lead"])
        assert in_the_middle < CALLS and outbox_pending(database) > 0

        async with daemon_process(config):
            assert await until(lambda: outbox_pending(database) == 0, 60)

        # every call the test placed is a new number: each has its records (ORIGIN_ID = the
        # command's key, "<linkedid>/records") and its registration, whatever the daemon stored
        origins = Counter(lead["ORIGIN_ID"] for lead in portal.records["lead"].values())
        assert set(origins) == {f"{linkedid}/records" for linkedid in linkedids}  # nothing lost
        assert set(origins.values()) == {1}  # nothing twice
        registrations = Counter(call.params["EXTERNAL_CALL_ID"] for call in portal.calls.values())
        assert set(registrations) == set(linkedids) and set(registrations.values()) == {1}
        assert all(call.finished for call in portal.calls.values())
        # a register the kill caught in flight is sent again (the killed daemon never stored its
        # answer): the portal answers a call registered and not finished with its CALL_ID, for 30
        # minutes (telephony.externalcall.register), so it stays one call, asserted above
        assert all(call.registrations <= 2 for call in portal.calls.values()), \
            [(call.params["EXTERNAL_CALL_ID"], call.registrations) for call in portal.calls.values()]
        assert portal.violations == [] and portal.limit_hits == 0
    finally:
        await portal.stop()
