"""Issue 10's acceptance on PostgreSQL, end to end: the whole daemon with its CRM on the test
session's PostgreSQL server, a real Asterisk 22 placing calls, and the server restarted while
the calls are up."""
from __future__ import annotations

import asyncio
import time

import pytest

from agi_daemon.crm.embedded import EmbeddedCrm
from tests.asterisk.sandbox import closed_port
from tests.daemon_harness import CLIENT, UNKNOWN, logged_calls, rang, running_daemon, write_config
from tests.fakes.fastagi import agi_call
from tests.fakes.polling import eventually

pytestmark = pytest.mark.databases("postgresql")

PARIS_AS_DIALLED = "0184880000"
DEADLINE_MS = 300


@pytest.mark.asterisk
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


async def test_client_created_through_one_daemon_is_routed_to_its_responsible_by_another_at_once(tmp_path, crm):
    """Two daemons (two PBXs) on one PostgreSQL database: the lead the first creates for a new
    caller is the known client the second routes, on the very next call."""
    first_dir, second_dir = tmp_path / "pbx1", tmp_path / "pbx2"
    first_dir.mkdir()
    second_dir.mkdir()
    ami = (closed_port(), "agi-daemon", "unused")
    async with (
        EmbeddedCrm(crm.url.render_as_string(hide_password=False)) as second_crm,
        running_daemon(None, write_config(first_dir, ami=ami), crm, wait_for_ami=False) as first,
        running_daemon(None, write_config(second_dir, ami=ami), second_crm, wait_for_ami=False) as second,
    ):
        new = await agi_call(first.agi_port, "incoming", extension=PARIS_AS_DIALLED, callerid=UNKNOWN, args=("pbx1.1",))
        [lead] = await eventually(lambda: crm.list_records("leads"))
        known = await agi_call(second.agi_port, "incoming", extension=PARIS_AS_DIALLED, callerid=UNKNOWN, args=("pbx2.1",))

    assert (new["AGI_DAEMON_STATUS"], new.get("AGI_DAEMON_RESPONSIBLE", "")) == ("ok", "")
    assert (lead["created_by_call"], lead["responsible"]) == ("pbx1.1", "alice")
    assert (known["AGI_DAEMON_STATUS"], known["AGI_DAEMON_RESPONSIBLE"]) == ("ok", "Local/101@employees")
    assert [lead["id"] for lead in await crm.list_records("leads")] == [lead["id"]]  # the second created nothing


def named_pbx(config, pbx_id: str):
    config.write_text(config.read_text().replace("  crm_deadline_ms:", f"  pbx_id: {pbx_id}\n  crm_deadline_ms:", 1))
    return config


async def test_two_pbxs_giving_two_new_callers_the_same_linkedid_create_two_leads_each_named_by_its_pbx(tmp_path, crm):
    """Each Asterisk numbers its calls on its own: daemon.pbx_id keeps them apart in the store."""
    first_dir, second_dir = tmp_path / "pbx1", tmp_path / "pbx2"
    first_dir.mkdir()
    second_dir.mkdir()
    ami = (closed_port(), "agi-daemon", "unused")
    other = "+33699887700"
    async with (
        EmbeddedCrm(crm.url.render_as_string(hide_password=False)) as second_crm,
        running_daemon(None, named_pbx(write_config(first_dir, ami=ami), "paris"), crm, wait_for_ami=False) as first,
        running_daemon(None, named_pbx(write_config(second_dir, ami=ami), "lyon"), second_crm,
                       wait_for_ami=False) as second,
    ):
        await agi_call(first.agi_port, "incoming", extension=PARIS_AS_DIALLED, callerid=UNKNOWN, args=("1764640000.1",))
        await agi_call(second.agi_port, "incoming", extension=PARIS_AS_DIALLED, callerid=other, args=("1764640000.1",))
        leads = await eventually(lambda: _two(crm.list_records("leads")))

    assert sorted((lead["created_by_pbx"], lead["created_by_call"], lead["phones"][0]) for lead in leads) == [
        ("lyon", "1764640000.1", other), ("paris", "1764640000.1", UNKNOWN)]


async def _two(records):
    found = await records
    return found if len(found) == 2 else None
