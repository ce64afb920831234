"""Issue 2's acceptance, end to end: the whole daemon in-process, a real Asterisk 22 placing
calls through the project's dialplan, and a real CRM.

Employees are Local/<ext>@employees (they answer unless EMPLOYEE_<ext> says noanswer/busy),
the trunk is Local/<number>@trunk; ring times are 2 s so the suite stays quick.
Every scenario runs once per `mode` (tests/conftest.py): FastAGI+AMI through
dialplan/agi-daemon.conf, and Stasis+ARI through dialplan/agi-daemon-stasis.conf; and once per
CRM (`adapters`): the embedded CRM on SQLite and on PostgreSQL, and `crm.adapter: bitrix24`
against the in-test portal. `crm` is what that CRM holds (tests/crm/crm_holds.py).
"""
from __future__ import annotations

import asyncio
import logging
import time

import pytest

from tests.asterisk.ami_client import user_event
from tests.daemon_harness import (  # noqa: F401  (scenario_crm: the `crm` fixture)
    ALICE_MOBILE, BLOCKED, CALL_LOG, CLIENT, UNKNOWN, Mode, call_log_said, logged_calls, rang, running_daemon,
    scenario_crm,
)
from tests.fakes.polling import eventually
from tests.fakes.crm import SlowCrm

pytestmark = [pytest.mark.asterisk, pytest.mark.databases("sqlite", "postgresql"),
              pytest.mark.adapters("embedded", "bitrix24")]
# a slow CRM is the embedded store made slow (SlowCrm): with bitrix24 a portal that does not
# answer is tests/test_app_bitrix24.py's portal-down scenario
EMBEDDED_ONLY = pytest.mark.adapters("embedded")

PARIS_AS_DIALLED = "0184880000"  # the trunk delivers the national form
LYON_AS_DIALLED = "33472000000"  # ... or E.164 without '+'


async def nothing_in_crm(crm):
    kinds = ("leads", "contacts", "companies", "deals", "calls", "offers")
    return {kind: await crm.list_records(kind) for kind in kinds if await crm.list_records(kind)}


async def test_known_contact_rings_responsible_first_then_queue_group(tmp_path, mode, crm, asterisk_ami, employees):
    await crm.add_record("contact", "Client SA", CLIENT, "bob")
    employees.set_global("EMPLOYEE_102", "noanswer")
    async with running_daemon(employees, mode.config(tmp_path), crm):
        since = asterisk_ami.mark()
        call = await asterisk_ami.originate_incoming(PARIS_AS_DIALLED, CLIENT)
        first = await asterisk_ami.wait_event(rang(call.linkedid, "102"), 5, since=since)
        started = time.monotonic()
        await asterisk_ami.wait_event(rang(call.linkedid, "101"), 5, since=since)
        waited = time.monotonic() - started
        rings = [e.get("extension") for e in asterisk_ami.events[since:] if rang(call.linkedid, e.get("extension") or "")(e)]
        assert rings[:2] == ["102", "101"], rings
        assert 1.5 < waited < 3.5  # bob rang responsible_ring_seconds (2 s) before the queue group
        assert first is not None


async def test_unknown_caller_classic_creates_one_lead_for_queue_head_and_logs_the_call(tmp_path, mode, crm, asterisk_ami, employees):
    async with running_daemon(employees, mode.config(tmp_path, source="ADS"), crm):
        since = asterisk_ami.mark()
        call = await asterisk_ami.originate_incoming(PARIS_AS_DIALLED, UNKNOWN)
        await asterisk_ami.wait_event(rang(call.linkedid, "101"), 5, since=since)
        await asyncio.sleep(1.0)
        await asterisk_ami.hangup_call(call.linkedid)
        calls = await eventually(lambda: logged_calls(crm, call.linkedid))
    [lead] = await crm.list_records("leads")
    assert (lead["phones"], lead["source"], lead["responsible"], lead["status"]) == ([UNKNOWN], "ADS", "alice", "NEW")
    assert lead["created_by_call"] == call.linkedid
    [logged] = calls
    assert logged["entity"] == f"lead:{lead['id']}"
    assert (logged["direction"], logged["line"], logged["number"]) == ("incoming", "+33184880000", UNKNOWN)
    assert (logged["disposition"], logged["answered_by"]) == ("answered", "alice")
    assert 0.5 < logged["talk_seconds"] < 2.5


async def test_offer_line_creates_nothing_and_records_the_offer(tmp_path, mode, crm, asterisk_ami, employees):
    async with running_daemon(employees, mode.config(tmp_path), crm):
        since = asterisk_ami.mark()
        call = await asterisk_ami.originate_incoming(LYON_AS_DIALLED, UNKNOWN)
        await asterisk_ami.wait_event(rang(call.linkedid, "101"), 5, since=since)
        offers = await eventually(lambda: crm.list_records("offers"))
        await asterisk_ami.hangup_call(call.linkedid)
        await eventually(lambda: logged_calls(crm, call.linkedid))
    assert [(o["linkedid"], o["phone"], o["line"]) for o in offers] == [(call.linkedid, UNKNOWN, "+33472000000")]
    if crm.adapter == "embedded":  # the call window's offer; on Bitrix24, the portal's own card offers (CRM_CREATE=0)
        assert [(o["employees"], o["status"]) for o in offers] == [(["alice", "bob"], "open")]
    for kind in ("leads", "contacts", "companies", "deals"):
        assert await crm.list_records(kind) == []


@pytest.mark.parametrize("caller", [BLOCKED, ALICE_MOBILE], ids=["exception-list", "employee-mobile"])
async def test_excluded_caller_is_routed_and_nothing_reaches_the_crm(tmp_path, mode, crm, asterisk_ami, employees, caller, caplog):
    caplog.set_level(logging.INFO, logger=CALL_LOG)
    async with running_daemon(employees, mode.config(tmp_path), crm):
        before = crm.requests  # a remote CRM: what the daemon asked at its start
        since = asterisk_ami.mark()
        call = await asterisk_ami.originate_incoming(PARIS_AS_DIALLED, caller)
        await asterisk_ami.wait_event(rang(call.linkedid, "101"), 5, since=since)
        [caller_side] = [c for c in await asterisk_ami.channels(call.linkedid) if "@agi-daemon-incoming" in c and c.endswith(";2")]
        status = await asterisk_ami.getvar("AGI_DAEMON_STATUS", caller_side)
        await asyncio.sleep(0.5)
        await asterisk_ami.hangup_call(call.linkedid)
        # both reports of the call's end (the hangup handler's and call tracking's) handled
        handled = await eventually(call_log_said(caplog, call.linkedid, "not logged", times=2))
    assert handled
    assert status == "excluded"
    assert await nothing_in_crm(crm) == {}
    assert crm.requests == before  # not one request to a remote CRM (None == None: the embedded CRM has no wire)


@pytest.mark.parametrize("create_with", ["contact", "company"])
async def test_simple_mode_creates_deal_in_pipeline_with_contact_or_company_and_converted_lead(tmp_path, mode, crm, asterisk_ami, employees, create_with):
    config = mode.config(tmp_path, mode="simple", create_with=create_with, pipeline="b2b")
    async with running_daemon(employees, config, crm):
        since = asterisk_ami.mark()
        call = await asterisk_ami.originate_incoming(PARIS_AS_DIALLED, UNKNOWN)
        await asterisk_ami.wait_event(rang(call.linkedid, "101"), 5, since=since)
        await asterisk_ami.hangup_call(call.linkedid)
        [logged] = await eventually(lambda: logged_calls(crm, call.linkedid))
    [deal] = await crm.list_records("deals")
    [party] = await crm.list_records("contacts" if create_with == "contact" else "companies")
    leads = await crm.list_records("leads")
    other = await crm.list_records("companies" if create_with == "contact" else "contacts")
    assert (deal["pipeline"], deal["responsible"], deal["created_by_call"]) == ("b2b", "alice", call.linkedid)
    assert deal[create_with] == f"{create_with}:{party['id']}"
    assert (party["phones"], party["responsible"]) == ([UNKNOWN], "alice")
    if crm.adapter == "bitrix24":
        assert leads == []  # R1 simple mode: no lead at all on the portal
    else:
        [lead] = leads  # recorded, and converted at once
        assert lead["status"] == "CONVERTED" and f"deal:{deal['id']}" in lead["converted_to"]
    assert other == []
    assert logged["entity"] == f"deal:{deal['id']}"


async def test_create_for_outgoing_ignores_unknown_callers_and_creates_lead_for_the_calling_employee(tmp_path, mode, crm, asterisk_ami, employees):
    async with running_daemon(employees, mode.config(tmp_path, create_for="outgoing"), crm):
        since = asterisk_ami.mark()
        incoming = await asterisk_ami.originate_incoming(PARIS_AS_DIALLED, UNKNOWN)
        await asterisk_ami.wait_event(rang(incoming.linkedid, "101"), 5, since=since)
        await asterisk_ami.hangup_call(incoming.linkedid)
        await eventually(lambda: logged_calls(crm, incoming.linkedid))
        assert await crm.list_records("leads") == []

        outgoing = await asterisk_ami.originate_outgoing("06 55 44 33 22", "102")
        await asterisk_ami.wait_event(user_event("AgiDaemonTestTrunk", linkedid=outgoing.linkedid, number="+33655443322"), 5, since=since)
        await asterisk_ami.hangup_call(outgoing.linkedid)
        [logged] = await eventually(lambda: logged_calls(crm, outgoing.linkedid))
    [lead] = await crm.list_records("leads")
    assert (lead["phones"], lead["responsible"], lead["created_by_call"]) == (["+33655443322"], "bob", outgoing.linkedid)
    assert (logged["direction"], logged["number"], logged["entity"]) == ("outgoing", "+33655443322", f"lead:{lead['id']}")


@EMBEDDED_ONLY
async def test_slow_crm_still_reaches_queue_group_within_deadline_and_records_appear_afterwards(tmp_path, mode, crm, asterisk_ami, employees):
    slow = TimedSlowCrm(crm.store, delay=1.5)
    async with running_daemon(employees, mode.config(tmp_path, deadline_ms=300), slow):
        since = asterisk_ami.mark()
        call = await asterisk_ami.originate_incoming(PARIS_AS_DIALLED, UNKNOWN)
        await asterisk_ami.wait_event(rang(call.linkedid, "101"), 5, since=since)
        reached = time.monotonic()
        assert slow.asked_at is not None
        assert reached - slow.asked_at < 0.300 + 0.100
        assert await crm.list_records("leads") == []  # the lookup is still running
        leads = await eventually(lambda: crm.list_records("leads"))
        await asterisk_ami.hangup_call(call.linkedid)
        [logged] = await eventually(lambda: logged_calls(crm, call.linkedid))
    assert leads[0]["responsible"] == "alice"
    assert logged["entity"] == f"lead:{leads[0]['id']}"


class TimedSlowCrm(SlowCrm):
    """SlowCrm that notes when routing asked it (the moment the call reached the daemon)."""

    asked_at: float | None = None

    async def find_by_phone(self, phone):
        if self.asked_at is None:
            self.asked_at = time.monotonic()
        return await super().find_by_phone(phone)


async def test_daemon_stopped_dialplan_still_routes_to_queue_group(tmp_path, mode, crm, asterisk_ami, employees):
    async with running_daemon(employees, mode.config(tmp_path), crm):
        pass  # started (fallback written, AGI URL set), then stopped: the port is now closed
    since = asterisk_ami.mark()
    call = await asterisk_ami.originate_incoming(PARIS_AS_DIALLED, UNKNOWN)
    await asterisk_ami.wait_event(rang(call.linkedid, "101"), 5, since=since)
    assert await crm.list_records("leads") == []


@EMBEDDED_ONLY
async def test_daemon_stopping_while_a_call_waits_in_stasis_still_sends_the_call_on(tmp_path, crm, asterisk_ami, employees):
    """Stasis+ARI only (FastAGI has no such state): the daemon is stopped while it decides a
    call (a slow CRM); the decision is delivered before the ARI link closes, and the call rings."""
    mode = Mode("ari", employees)
    since = asterisk_ami.mark()
    async with running_daemon(employees, mode.config(tmp_path, deadline_ms=300), SlowCrm(crm.store, delay=1.5)) as daemon:
        call = await asterisk_ami.originate_incoming(PARIS_AS_DIALLED, UNKNOWN)
        assert await eventually(lambda: daemon.stasis.deciding > 0, interval=0.005)
    await asterisk_ami.wait_event(rang(call.linkedid, "101"), 5, since=since)
