"""kill -9 of `agi-daemon run` (crm.adapter bitrix24) while the portal is down: the calls were
routed `fallback` (their caller's lookup failed), have hung up, and their CRM work still
retries the lookup in memory. The hangup reports are kept in the daemon's store, so the
restart logs every one of those calls, the portal still down at first: each gets its lead and
its registration once the portal answers, once."""
from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter

from tests.asterisk.sandbox import closed_port
from tests.daemon_harness import write_config
from tests.faults.outbox_harness import daemon_process, hang_up, portal_of_the_test_pbx, route, until

CALLS = 12


def _kept(database) -> list[str]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as conn:
        return [linkedid for (linkedid,) in conn.execute("SELECT linkedid FROM kept_reports ORDER BY id")]


async def test_calls_hung_up_while_their_caller_was_still_looked_up_survive_a_kill9(tmp_path):
    portal = await portal_of_the_test_pbx()
    try:
        config = write_config(tmp_path, ami=(closed_port(), "agi-daemon", "unused"), bitrix24=portal.webhook_url)
        database = tmp_path / "crm.sqlite3"
        linkedids = [f"k9k.{index}" for index in range(CALLS)]
        numbers = [f"+3369{index:07d}" for index in range(CALLS)]
        portal.fail_next(100_000, 503, None)  # the portal is down: every request answers a gateway's 503
        async with daemon_process(config) as daemon:
            answers = await asyncio.gather(*(route(daemon.port, linkedid, number)
                                             for linkedid, number in zip(linkedids, numbers, strict=True)))
            assert [status for status, _ in answers] == ["fallback"] * CALLS  # routed without the CRM
            await asyncio.gather(*(hang_up(daemon.port, linkedid, number, "fallback")
                                   for linkedid, number in zip(linkedids, numbers, strict=True)))
            # the hangup sessions are over; the calls' lookups still retry in memory
            assert sorted(_kept(database)) == sorted(linkedids)
            daemon.process.kill()
        assert portal.records["lead"] == {} and portal.calls == {}
        async with daemon_process(config):
            # still down at the restart: the kept calls' lookups are given up, and what they
            # create and their logs are committed to the outbox all the same
            assert await until(lambda: not _kept(database), 60), _kept(database)
            portal.heal()
            assert await until(lambda: len(portal.calls) == CALLS and all(c.finished for c in portal.calls.values()),
                               60), len(portal.calls)
        origins = Counter(lead["ORIGIN_ID"] for lead in portal.records["lead"].values())
        assert origins == Counter({f"{linkedid}/records": 1 for linkedid in linkedids})  # each lead, once
        registrations = Counter(call.params["EXTERNAL_CALL_ID"] for call in portal.calls.values())
        assert registrations == Counter(linkedids)
        assert portal.violations == []
    finally:
        await portal.stop()
