"""Issue 10's two-PBX scenario for real: two daemons, each beside its own sandboxed Asterisk 22
(the session's `employees` sandbox is PBX 1 "paris", a second sandbox started for this module
is PBX 2 "lyon"), sharing one PostgreSQL database. Calls are placed, answered and transferred
on each Asterisk through the project's dialplan, and the test reads the shared CRM back."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest

from agi_daemon.crm.embedded import EmbeddedCrm
from tests.asterisk.ami_client import TestAmi, blind_transfer
from tests.daemon_harness import CALL_LOG, CLIENT, UNKNOWN, call_log_said, logged_calls, running_daemon, write_config
from tests.fakes.polling import eventually

pytestmark = [pytest.mark.asterisk, pytest.mark.databases("postgresql")]

PARIS_AS_DIALLED = "0184880000"
ALICE = "Local/101@employees"  # the queue group's head, on both PBXs


@pytest.fixture(scope="module")
def second_asterisk(asterisk_factory):
    """PBX 2's Asterisk, beside the session's shared one (PBX 1)."""
    return asterisk_factory("second-pbx")


@contextlib.asynccontextmanager
async def two_pbxs(tmp_path, crm, first_sandbox, second_sandbox):
    """Daemon "paris" beside `first_sandbox` on `crm`, daemon "lyon" beside `second_sandbox` on
    its own connection to the same database; yields an AMI client of PBX 2 (PBX 1's is the
    test's `asterisk_ami`), which hangs up what it originated at the end."""
    configs = []
    for pbx_id, sandbox in (("paris", first_sandbox), ("lyon", second_sandbox)):
        directory = tmp_path / pbx_id
        directory.mkdir()
        configs.append(write_config(directory, ami=sandbox.daemon_ami, pbx_id=pbx_id))
    async with (
        EmbeddedCrm(crm.url.render_as_string(hide_password=False)) as second_crm,
        running_daemon(first_sandbox, configs[0], crm),
        running_daemon(second_sandbox, configs[1], second_crm),
        TestAmi.connect(second_sandbox) as second_ami,
    ):
        try:
            yield second_ami
        finally:
            await second_ami.hangup_originated()


async def answered_call(ami, caller: str, linkedid: str | None = None):
    """`caller` calls the Paris line of `ami`'s PBX; alice (101) answers."""
    call = await ami.originate_incoming(PARIS_AS_DIALLED, caller, linkedid=linkedid)
    await asyncio.wait_for(call.response, 5)
    return call


async def decided(ami, call) -> tuple[str, str]:
    """(AGI_DAEMON_STATUS, AGI_DAEMON_RESPONSIBLE) the daemon set on the caller's channel."""
    [caller_side] = [c for c in await ami.channels(call.linkedid) if "@agi-daemon-incoming" in c and c.endswith(";2")]
    return await ami.getvar("AGI_DAEMON_STATUS", caller_side), await ami.getvar("AGI_DAEMON_RESPONSIBLE", caller_side)


async def hang_up(ami, call, caplog) -> None:
    """Hang the call up, and wait until both reports of its end (the hangup handler's and call
    tracking's) have gone to the outbox. The test reads the call log once the daemons have
    stopped, so after their outboxes are drained: what it counts is final."""
    await ami.hangup_call(call.linkedid)
    assert await eventually(call_log_said(caplog, call.linkedid, ": logged ", times=2), timeout=10)


async def test_client_created_on_pbx_1_calling_pbx_2_rings_its_responsible_first_and_both_calls_log_once_on_the_lead(
    tmp_path, crm, employees, asterisk_ami, second_asterisk, caplog
):
    caplog.set_level(logging.INFO, logger=CALL_LOG)
    async with two_pbxs(tmp_path, crm, employees, second_asterisk) as second_ami:
        on_paris = await answered_call(asterisk_ami, UNKNOWN)
        paris_decided = await decided(asterisk_ami, on_paris)
        [lead] = await eventually(lambda: crm.list_records("leads"))
        await hang_up(asterisk_ami, on_paris, caplog)

        on_lyon = await answered_call(second_ami, UNKNOWN)  # the next call, on the other PBX
        lyon_decided = await decided(second_ami, on_lyon)
        await hang_up(second_ami, on_lyon, caplog)

    paris_logged = await logged_calls(crm, on_paris.linkedid)
    lyon_logged = await logged_calls(crm, on_lyon.linkedid)
    assert paris_decided == ("ok", "")  # a new caller: the queue group, no responsible
    assert (lead["phones"], lead["responsible"], lead["created_by_pbx"]) == ([UNKNOWN], "alice", "paris")
    assert lyon_decided == ("ok", ALICE)  # R6 on PBX 2, from PBX 1's lead, on the very next call
    assert [lead["id"] for lead in await crm.list_records("leads")] == [lead["id"]]
    assert [(c["pbx"], c["entity"], c["answered_by"]) for c in paris_logged + lyon_logged] == [
        ("paris", f"lead:{lead['id']}", "alice"), ("lyon", f"lead:{lead['id']}", "alice")]
    assert len(await crm.list_records("calls")) == 2


async def test_transfer_on_pbx_2_keeps_pbx_1_lead_responsible_and_gives_pbx_2_new_lead_to_the_target(
    tmp_path, crm, employees, asterisk_ami, second_asterisk, caplog
):
    caplog.set_level(logging.INFO, logger=CALL_LOG)
    async with two_pbxs(tmp_path, crm, employees, second_asterisk) as second_ami:
        on_paris = await answered_call(asterisk_ami, CLIENT)
        [paris_lead] = await eventually(lambda: crm.list_records("leads"))
        await hang_up(asterisk_ami, on_paris, caplog)

        known = await answered_call(second_ami, CLIENT)  # PBX 1's lead: a known client on PBX 2
        await blind_transfer(second_ami, known.linkedid, "101", "102")
        await hang_up(second_ami, known, caplog)

        new = await answered_call(second_ami, UNKNOWN)  # a new caller on PBX 2
        lyon_lead = (await eventually(lambda: _created_by(crm, "lyon")))[0]
        await blind_transfer(second_ami, new.linkedid, "101", "102")
        await hang_up(second_ami, new, caplog)

    leads = {lead["created_by_pbx"]: lead for lead in await crm.list_records("leads")}
    [known_logged] = await logged_calls(crm, known.linkedid)
    [new_logged] = await logged_calls(crm, new.linkedid)
    assert lyon_lead["responsible"] == "alice"  # the queue head, until the transfer
    assert (leads["paris"]["id"], leads["paris"]["responsible"]) == (paris_lead["id"], "alice")  # R10
    assert (leads["lyon"]["phones"], leads["lyon"]["responsible"]) == ([UNKNOWN], "bob")
    assert (known_logged["pbx"], known_logged["entity"]) == ("lyon", f"lead:{paris_lead['id']}")
    assert (new_logged["pbx"], new_logged["entity"]) == ("lyon", f"lead:{lyon_lead['id']}")
    for logged in (known_logged, new_logged):
        assert logged["transfers"] == [{"from": "alice", "to": "bob", "kind": "blind"}]


async def test_first_calls_of_both_pbxs_with_the_same_linkedid_are_each_logged_once_under_their_pbx(
    tmp_path, crm, employees, asterisk_ami, second_asterisk, caplog
):
    caplog.set_level(logging.INFO, logger=CALL_LOG)
    # Each Asterisk numbers its calls "<epoch>.<sequence>": two started together give their
    # first calls the same linkedid. (A fresh one per run: the shared sandbox outlives a test.)
    linkedid = f"{int(time.time())}.{time.monotonic_ns() % 1000}"
    other = "+33699887700"
    async with two_pbxs(tmp_path, crm, employees, second_asterisk) as second_ami:
        on_paris = await answered_call(asterisk_ami, UNKNOWN, linkedid)
        on_lyon = await answered_call(second_ami, other, linkedid)
        await eventually(lambda: _created_by(crm, "paris"))
        await eventually(lambda: _created_by(crm, "lyon"))
        await asterisk_ami.hangup_call(on_paris.linkedid)
        await second_ami.hangup_call(on_lyon.linkedid)
        # both reports of each call's end (hangup handler, tracking), two calls: four
        assert await eventually(call_log_said(caplog, linkedid, ": logged ", times=4), timeout=10)

    logged = await logged_calls(crm, linkedid)
    leads = {lead["created_by_pbx"]: lead for lead in await crm.list_records("leads")}
    assert sorted((lead["created_by_pbx"], lead["created_by_call"], lead["phones"][0]) for lead in leads.values()) == [
        ("lyon", linkedid, other), ("paris", linkedid, UNKNOWN)]
    assert sorted((c["pbx"], c["number"], c["entity"]) for c in logged) == [
        ("lyon", other, f"lead:{leads['lyon']['id']}"), ("paris", UNKNOWN, f"lead:{leads['paris']['id']}")]


async def _created_by(crm, pbx: str) -> list[dict]:
    return [lead for lead in await crm.list_records("leads") if lead.get("created_by_pbx") == pbx]
