"""Issue 10's acceptance on PostgreSQL, end to end: the whole daemon with its CRM on the test
session's PostgreSQL server, a real Asterisk 22 placing calls, and the server restarted while
the calls are up."""
from __future__ import annotations

import asyncio
import time

import pytest

from tests.daemon_harness import CLIENT, UNKNOWN, logged_calls, rang, running_daemon, write_config
from tests.fakes.polling import eventually

pytestmark = [pytest.mark.asterisk, pytest.mark.databases("postgresql")]

PARIS_AS_DIALLED = "0184880000"
DEADLINE_MS = 300


async def test_postgresql_restarted_during_calls_routes_them_in_time_and_completes_their_records_afterwards(
    tmp_path, crm, postgresql, asterisk_ami, employees
):
    await crm.add_record("contact", "Client SA", CLIENT, "bob")
    config = write_config(tmp_path, deadline_ms=DEADLINE_MS, ami=employees.daemon_ami)
    async with running_daemon(employees, config, crm):
        postgresql.stop()
        try:
            routed_in, calls = [], []
            for caller in (UNKNOWN, CLIENT):
                since = asterisk_ami.mark()
                started = time.monotonic()
                call = await asterisk_ami.originate_incoming(PARIS_AS_DIALLED, caller)
                # the queue group's head, even for bob's client: the lookup failed, nobody waits for it
                await asterisk_ami.wait_event(rang(call.linkedid, "101"), 5, since=since)
                routed_in.append(time.monotonic() - started)
                [caller_side] = [c for c in await asterisk_ami.channels(call.linkedid)
                                 if "@agi-daemon-incoming" in c and c.endswith(";2")]
                assert await asterisk_ami.getvar("AGI_DAEMON_STATUS", caller_side) == "fallback"
                calls.append(call)
        finally:
            postgresql.start()  # back while the calls are up (the daemon's retries span 6 s)
        await asyncio.sleep(0.5)
        for call in calls:
            await asterisk_ami.hangup_call(call.linkedid)
        new, known = calls
        [new_logged] = await eventually(lambda: logged_calls(crm, new.linkedid), timeout=15)
        [known_logged] = await eventually(lambda: logged_calls(crm, known.linkedid), timeout=15)

    assert max(routed_in) < DEADLINE_MS / 1000 + 0.5, routed_in
    [lead] = await crm.list_records("leads")
    assert (lead["phones"], lead["responsible"], lead["created_by_call"]) == ([UNKNOWN], "alice", new.linkedid)
    assert (new_logged["entity"], new_logged["answered_by"], new_logged["disposition"]) == (
        f"lead:{lead['id']}", "alice", "answered")
    [contact] = await crm.list_records("contacts")
    assert (known_logged["entity"], known_logged["number"]) == (f"contact:{contact['id']}", CLIENT)
    assert known_logged["talk_seconds"] > 0.3 and new_logged["talk_seconds"] > 0.3
