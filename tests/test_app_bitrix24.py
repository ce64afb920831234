"""Issue 6's acceptance with `crm.adapter: bitrix24`: the whole daemon in-process, a real
Asterisk 22 placing calls, and the in-test Bitrix24 portal (tests/crm/bitrix24_portal.py: it
checks each request's shape and enforces the 2/s, burst 50 bucket). What is asserted is what
the portal shows afterwards: records, their SOURCE_ID, ASSIGNED_BY_ID, CATEGORY_ID, the call's
registration and finish, R10 reassignment, and no request at all for an excluded number.

These scenarios run with FastAGI+AMI and SQLite only (the `mode` and `databases` dimensions of
tests/test_app.py prove the routing and the store; this module proves the adapter): the
daemon's own store holds only the outbox and the ledger here.
"""
from __future__ import annotations

import asyncio
import time

import pytest

from agi_daemon.crm.registry import CrmParts, build_crm
from agi_daemon.remote_crm import bitrix24_crm
from agi_daemon.settings import SettingsHolder
from tests.crm.bitrix24_portal import Bitrix24Portal
from tests.daemon_harness import ALICE_MOBILE, BLOCKED, CLIENT, UNKNOWN, Mode, rang, running_daemon
from tests.fakes.polling import eventually
from tests.test_app_tracking import answered_call, transfer

pytestmark = [pytest.mark.asterisk]

PARIS_AS_DIALLED = "0184880000"
LYON_AS_DIALLED = "33472000000"


@pytest.fixture
async def portal():
    portal = await Bitrix24Portal().start()
    portal.add_user(11, "Alice Martin", inner_phone="101")
    portal.add_user(12, "Bob Durand", inner_phone="102")
    try:
        yield portal
    finally:
        await portal.stop()
    assert portal.violations == []  # every request had the shape the REST documentation gives
    assert portal.limit_hits == 0  # never QUERY_LIMIT_EXCEEDED in steady state


@pytest.fixture
def fastagi(employees) -> Mode:
    return Mode("ami", employees)


class TimedLookup:
    """The adapter's lookup, noting when routing first asked about each number (the moment
    the call reached the daemon)."""

    def __init__(self, lookup) -> None:
        self._lookup = lookup
        self.asked_at: dict[str, float] = {}

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def find_by_phone(self, phone):
        self.asked_at.setdefault(phone, time.monotonic())
        return await self._lookup.find_by_phone(phone)


def portal_daemon(employees, config, crm):
    """The daemon with crm.adapter bitrix24, on the test's store (outbox and ledger)."""
    settings = SettingsHolder(config).current
    parts = build_crm("bitrix24", settings.crm.embedded.database, crm, remote=bitrix24_crm(settings))
    parts = CrmParts(parts.store, TimedLookup(parts.lookup), parts.remote)
    return _opened(employees, config, parts)


class _opened:
    def __init__(self, employees, config, parts) -> None:
        self._parts = parts
        self._running = running_daemon(employees, config, parts)

    async def __aenter__(self):
        await self._parts.remote.open()
        daemon = await self._running.__aenter__()
        daemon.timed_lookup = self._parts.lookup
        return daemon

    async def __aexit__(self, *exc):
        try:
            return await self._running.__aexit__(*exc)
        finally:
            await self._parts.remote.close()


def calls_of(portal: Bitrix24Portal, linkedid: str):
    return [call for call in portal.calls.values() if call.params.get("EXTERNAL_CALL_ID") == linkedid]


def finished(portal: Bitrix24Portal, linkedid: str):
    def probe():
        calls = calls_of(portal, linkedid)
        return calls if calls and all(call.finished for call in calls) else None
    return probe


async def test_unknown_caller_creates_one_lead_with_source_and_responsible_and_the_call_is_registered_and_finished(
        tmp_path, fastagi, crm, asterisk_ami, employees, portal):
    async with portal_daemon(employees, fastagi.config(tmp_path, source="ADS", bitrix24=portal.webhook_url), crm):
        since = asterisk_ami.mark()
        call = await asterisk_ami.originate_incoming(PARIS_AS_DIALLED, UNKNOWN)
        await asterisk_ami.wait_event(rang(call.linkedid, "101"), 5, since=since)
        await asyncio.sleep(1.0)
        await asterisk_ami.hangup_call(call.linkedid)
        [registered] = await eventually(finished(portal, call.linkedid), timeout=10)
    [(lead_id, lead)] = portal.records["lead"].items()
    assert (lead["SOURCE_ID"], str(lead["ASSIGNED_BY_ID"]), lead["ORIGIN_ID"]) == ("ADS", "11", f"{call.linkedid}/records")
    assert [phone["VALUE"] for phone in lead["PHONE"]] == [UNKNOWN]
    params = registered.params
    assert (str(params["TYPE"]), params["LINE_NUMBER"], params["PHONE_NUMBER"]) == ("2", "+33184880000", UNKNOWN)
    assert (params["CRM_ENTITY_TYPE"], str(params["CRM_ENTITY_ID"])) == ("LEAD", str(lead_id))
    assert (registered.finished["STATUS_CODE"], registered.finished["USER_ID"]) == ("200", 11)
    assert 0 <= registered.finished["DURATION"] <= 3
    assert registered.registrations == 1 and portal.records["contact"] == {} and portal.records["deal"] == {}


@pytest.mark.parametrize("create_with", ["contact", "company"])
async def test_simple_mode_creates_a_deal_in_the_pipeline_with_its_contact_or_company(
        tmp_path, fastagi, crm, asterisk_ami, employees, portal, create_with):
    portal.crm_mode = 2
    config = fastagi.config(tmp_path, mode="simple", pipeline="b2b", create_with=create_with,
                            bitrix24=portal.webhook_url)
    async with portal_daemon(employees, config, crm):
        call = await answered_call(asterisk_ami, UNKNOWN)
        await asterisk_ami.hangup_call(call.linkedid)
        [registered] = await eventually(finished(portal, call.linkedid), timeout=10)
    partner_kind = "contact" if create_with == "contact" else "company"
    [(deal_id, deal)] = portal.records["deal"].items()
    [(partner_id, partner)] = portal.records[partner_kind].items()
    assert (str(deal["CATEGORY_ID"]), deal["SOURCE_ID"], str(deal["ASSIGNED_BY_ID"])) == ("3", "CALL", "11")
    assert str(deal[f"{partner_kind.upper()}_ID"]) == str(partner_id)
    assert [phone["VALUE"] for phone in partner["PHONE"]] == [UNKNOWN]
    assert portal.records["lead"] == {}
    assert (registered.params["CRM_ENTITY_TYPE"], str(registered.params["CRM_ENTITY_ID"])) == ("DEAL", str(deal_id))


async def test_known_client_rings_the_portal_responsible_first_and_nothing_is_created(
        tmp_path, fastagi, crm, asterisk_ami, employees, portal):
    contact = portal.add_record("contact", {"NAME": "Client SA", "ASSIGNED_BY_ID": 12,
                                            "PHONE": [{"VALUE": CLIENT, "VALUE_TYPE": "WORK"}]})
    async with portal_daemon(employees, fastagi.config(tmp_path, bitrix24=portal.webhook_url), crm):
        since = asterisk_ami.mark()
        call = await asterisk_ami.originate_incoming(PARIS_AS_DIALLED, CLIENT)
        await asterisk_ami.wait_event(rang(call.linkedid, "102"), 5, since=since)  # bob: ASSIGNED_BY_ID 12
        await asyncio.sleep(0.5)
        await asterisk_ami.hangup_call(call.linkedid)
        [registered] = await eventually(finished(portal, call.linkedid), timeout=10)
    assert (registered.params["CRM_ENTITY_TYPE"], str(registered.params["CRM_ENTITY_ID"])) == ("CONTACT", str(contact))
    assert portal.records["lead"] == {} and len(portal.records["contact"]) == 1


async def test_offer_line_registers_the_call_with_the_portal_card_and_creates_nothing(
        tmp_path, fastagi, crm, asterisk_ami, employees, portal):
    async with portal_daemon(employees, fastagi.config(tmp_path, bitrix24=portal.webhook_url), crm):
        since = asterisk_ami.mark()
        call = await asterisk_ami.originate_incoming(LYON_AS_DIALLED, UNKNOWN)
        await asterisk_ami.wait_event(rang(call.linkedid, "101"), 5, since=since)
        [registered] = await eventually(lambda: calls_of(portal, call.linkedid), timeout=10)
        assert (str(registered.params["CRM_CREATE"]), str(registered.params["SHOW"])) == ("0", "1")
        await asterisk_ami.hangup_call(call.linkedid)
        await eventually(finished(portal, call.linkedid), timeout=10)
    assert all(records == {} for records in portal.records.values())


@pytest.mark.parametrize("caller", [BLOCKED, ALICE_MOBILE], ids=["exception-list", "employee-mobile"])
async def test_excluded_caller_is_routed_and_the_portal_gets_no_request_at_all(
        tmp_path, fastagi, crm, asterisk_ami, employees, portal, caller):
    async with portal_daemon(employees, fastagi.config(tmp_path, bitrix24=portal.webhook_url), crm):
        before = portal.requests
        since = asterisk_ami.mark()
        call = await asterisk_ami.originate_incoming(PARIS_AS_DIALLED, caller)
        await asterisk_ami.wait_event(rang(call.linkedid, "101"), 5, since=since)
        await asterisk_ami.hangup_call(call.linkedid)
        await asyncio.sleep(1.5)  # what tracking would send at the hangup had time to go out
        assert portal.requests == before
    assert portal.calls == {} and all(records == {} for records in portal.records.values())


async def test_transfer_of_a_new_client_call_gives_its_lead_to_the_target_on_the_portal(
        tmp_path, fastagi, crm, asterisk_ami, employees, portal):
    async with portal_daemon(employees, fastagi.config(tmp_path, bitrix24=portal.webhook_url), crm):
        call = await answered_call(asterisk_ami, UNKNOWN)
        await eventually(lambda: portal.records["lead"] or None, timeout=10)
        await transfer(asterisk_ami, call, "blind")
        await eventually(lambda: [lead for lead in portal.records["lead"].values()
                                  if str(lead.get("ASSIGNED_BY_ID")) == "12"] or None, timeout=10)
        await asterisk_ami.hangup_call(call.linkedid)
        [registered] = await eventually(finished(portal, call.linkedid), timeout=10)
    assert len(portal.records["lead"]) == 1 and registered.registrations == 1
    # finished once, on the first report (the hangup handler's): Bitrix24 cannot un-finish a call
    assert registered.finished["STATUS_CODE"] == "200"


OUTAGE_SECONDS = 10.0


async def test_portal_down_calls_are_routed_within_the_deadline_and_every_write_lands_once_when_it_is_back(
        tmp_path, fastagi, crm, asterisk_ami, employees, portal):
    """The outage is scaled down from a minute to ten seconds, past the lookup's retries (about
    six: after them the records are submitted without it): 503 QUERY_LIMIT_EXCEEDED, then
    timeouts, then refused connections, with a call from a new number placed in each phase."""
    deadline_ms = 300
    config = fastagi.config(tmp_path, deadline_ms=deadline_ms, bitrix24=portal.webhook_url)
    numbers = [f"+336998877{index:02d}" for index in range(3)]
    async with portal_daemon(employees, config, crm) as daemon:
        linkedids = []
        outage_began = time.monotonic()
        portal.fail_next(10_000, status=503, code="QUERY_LIMIT_EXCEEDED")
        for index, number in enumerate(numbers):
            if index == 1:
                portal._failures.clear()
                portal.time_out_next(3, seconds=1.0)
            if index == 2:
                await portal.refuse_connections()
            since = asterisk_ami.mark()
            call = await asterisk_ami.originate_incoming(PARIS_AS_DIALLED, number)
            await asterisk_ami.wait_event(rang(call.linkedid, "101"), 5, since=since)
            reached = time.monotonic()
            assert reached - daemon.timed_lookup.asked_at[number] < deadline_ms / 1000 + 0.100
            await asterisk_ami.hangup_call(call.linkedid)
            linkedids.append(call.linkedid)
        await asyncio.sleep(max(0.0, outage_began + OUTAGE_SECONDS - time.monotonic()))  # the portal stays down
        await portal.accept_connections()
        for linkedid in linkedids:
            await eventually(finished(portal, linkedid), timeout=60)
    for linkedid in linkedids:
        assert len(calls_of(portal, linkedid)) == 1
        assert len(portal.records_with_origin("lead", f"{linkedid}/records")) == 1
    assert len(portal.records["lead"]) == len(numbers)
