"""kill -9 of `agi-daemon run` (crm.adapter bitrix24, call tracking down) while the hangup
reports of finished calls are held back, waiting for tracking's reports that never come; then
a restart: every call is finished on the in-test portal exactly once, none lost, none twice,
and is one portal call with one lead. (A register the kill caught in flight may be sent again:
the portal answers a call registered and not finished with its CALL_ID, for 30 minutes, as the
telephony.externalcall.register documentation says.)

The killed daemon's requests still count in the portal's leaky bucket, and the restarted one
cannot know how many: its first requests may meet QUERY_LIMIT_EXCEEDED (one CI run did, with
the bucket four fifths full). The test makes that certain, the portal's bucket full at the
restart, and asserts the daemon takes the portal's word: it waits, retries, loses nothing."""
from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Callable

from tests.asterisk.sandbox import closed_port
from tests.daemon_harness import write_config
from tests.crm.bitrix24_portal import Bitrix24Portal
from tests.faults.outbox_harness import daemon_process, hang_up, outbox_pending, portal_of_the_test_pbx, route, until

CALLS = 10


def held_reports(database) -> int:
    """Hangup reports stored and held back (a hold claim), not yet delivered."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as conn:
        return conn.execute("SELECT count(*) FROM outbox WHERE status = 'pending' AND kind = 'log_call'"
                            " AND claimed_by LIKE '%:hold:%'").fetchone()[0]


def held_until_asked(portal: Bitrix24Portal) -> Callable[[], float]:
    """A clock for the portal that stands still until its next request, then runs on from
    there: its bucket does not leak meanwhile."""
    asked_after, held_at = portal.requests, time.monotonic()
    released: list[float] = []

    def clock() -> float:
        if portal.requests <= asked_after:
            return held_at
        if not released:
            released.append(time.monotonic())
        return held_at + time.monotonic() - released[0]

    return clock


async def test_kill9_while_hangup_reports_wait_for_tracking_then_restart_finishes_each_call_once(tmp_path):
    portal = await portal_of_the_test_pbx()
    try:
        config = write_config(tmp_path, ami=(closed_port(), "agi-daemon", "unused"), bitrix24=portal.webhook_url)
        database = tmp_path / "crm.sqlite3"
        linkedids = [f"k9h.{index}" for index in range(CALLS)]
        numbers = [f"+3368{index:07d}" for index in range(CALLS)]
        async with daemon_process(config) as daemon:
            answers = await asyncio.gather(*(route(daemon.port, linkedid, phone)
                                             for linkedid, phone in zip(linkedids, numbers, strict=True)))
            assert all(status is not None for status, _ in answers)
            await asyncio.gather(*(hang_up(daemon.port, linkedid, phone, status) for linkedid, phone, (status, _)
                                   in zip(linkedids, numbers, answers, strict=True)))
            # a hangup handler's session ends once its report is stored (nothing would send it
            # again): stored and held back, every one, as the last session ends
            assert held_reports(database) == CALLS
            daemon.process.kill()  # kill -9 during the grace
        assert not any(call.finished for call in portal.calls.values())  # held: nothing finished before the kill

        left = outbox_pending(database)  # the held reports, and any command the kill caught in flight
        portal.set_clock(held_until_asked(portal))  # however long the restart takes (a loaded CI):
        portal.fill_bucket()  # the killed daemon's last requests, still counted when the new one first asks
        async with daemon_process(config):
            assert await until(lambda: outbox_pending(database) == 0, 30)

        finished = Counter(call.params["EXTERNAL_CALL_ID"] for call in portal.calls.values() if call.finished)
        assert finished == Counter(linkedids)  # every call finished, once
        # one portal call per call: a register the kill caught in flight is sent again (the killed
        # daemon never stored its answer), and the portal answers it with the same CALL_ID
        assert Counter(call.params["EXTERNAL_CALL_ID"] for call in portal.calls.values()) == Counter(linkedids)
        leads = Counter(phone["VALUE"] for lead in portal.records["lead"].values() for phone in lead["PHONE"])
        assert leads == Counter(numbers)  # one lead per new caller, never two
        assert portal.violations == []
        # refused while the portal's bucket was full, each command at most once: after a refusal
        # the daemon waits for the bucket to leak instead of retrying into it
        assert 1 <= portal.limit_hits <= left
    finally:
        await portal.stop()
