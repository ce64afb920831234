"""The daemon's operations on a Bitrix24 portal, against the in-test portal."""
from __future__ import annotations

import asyncio

import pytest

from agi_daemon.core.crm_errors import RemoteCrmUnavailable
from agi_daemon.core.model import CrmMode, Direction, Disposition, EntityType
from agi_daemon.crm.bitrix24.auth import WebhookAuth
from agi_daemon.crm.bitrix24.bucket import LeakyBucket
from agi_daemon.crm.bitrix24.client import Bitrix24Client
from agi_daemon.crm.bitrix24.operations import (
    Bitrix24Operations,
    CallToFinish,
    CallToRegister,
    EmployeeDirectory,
    EmployeeLink,
    FinishStatus,
    NewRecord,
    create_command,
    finish_status,
    register_command,
)

CLIENT = "+33612000001"
LINE = "+33184880000"


@pytest.fixture
async def operations(portal):
    client = Bitrix24Client(WebhookAuth(portal.webhook_url), LeakyBucket(2, 50), timeout_seconds=0.5)
    await client.open()
    directory = EmployeeDirectory([EmployeeLink("alice", crm_user=11, extension="101"),
                                   EmployeeLink("bob", extension="102"), EmployeeLink("carol", extension="109")])
    await directory.load(client)
    yield Bitrix24Operations(client, directory)
    await client.close()


def lead(origin: str = "call-1:lead", phone: str = CLIENT) -> NewRecord:
    return NewRecord(EntityType.LEAD, f"Call {phone}", origin, "CALL", assigned_by_id=12, phone=phone)


async def test_employees_are_matched_by_crm_user_or_by_internal_phone(operations):
    employees = operations.employees
    assert (employees.user_of("alice"), employees.user_of("bob"), employees.user_of("carol")) == (11, 12, None)
    assert employees.employee_of(12) == "bob"
    assert employees.unmatched == ("carol",)


async def test_known_client_is_found_with_the_employee_responsible_for_it(portal, operations):
    contact = portal.add_record("contact", {"NAME": "Client", "ASSIGNED_BY_ID": "12",
                                            "PHONE": [{"VALUE": CLIENT, "VALUE_TYPE": "WORK"}]})
    found = await operations.find_client(CLIENT)
    assert (found.entity, found.entity_id, found.assigned_by_id, found.responsible) == (
        EntityType.CONTACT, contact, 12, "bob")
    assert await operations.find_by_duplicates(CLIENT) == [(EntityType.CONTACT, contact)]


async def test_unknown_number_is_no_client(operations):
    assert await operations.find_client("+33699999999") is None
    assert await operations.find_by_duplicates("+33699999999") == []


async def test_call_registered_on_a_created_lead_and_finished_as_answered(portal, operations):
    lead_id = await operations.create_record(lead())
    call = await operations.register_call(CallToRegister(
        "1700000000.1", Direction.INCOMING, CLIENT, LINE, user_id=11, source="CALL", show=True,
        entity=EntityType.LEAD, entity_id=lead_id))
    await operations.finish_call(CallToFinish(call.call_id, 42, FinishStatus.ANSWERED, user_id=12))
    registered = portal.calls[call.call_id]
    assert registered.params["EXTERNAL_CALL_ID"] == "1700000000.1"
    assert registered.params["TYPE"] == 2
    assert registered.params["LINE_NUMBER"] == LINE
    assert (registered.params["CRM_ENTITY_TYPE"], registered.params["CRM_ENTITY_ID"]) == ("LEAD", lead_id)
    assert registered.finished == {"USER_ID": 12, "DURATION": 42, "STATUS_CODE": "200"}
    record = portal.records["lead"][lead_id]
    assert (record["SOURCE_ID"], record["ASSIGNED_BY_ID"], record["ORIGIN_ID"]) == ("CALL", 12, "call-1:lead")
    assert record["PHONE"] == [{"VALUE": CLIENT, "VALUE_TYPE": "WORK"}]
    assert portal.violations == []


async def test_same_linkedid_registers_one_call_on_the_portal(portal, operations):
    call = CallToRegister("1700000000.2", Direction.OUTGOING, CLIENT, LINE, user_phone_inner="101")
    first = await operations.register_call(call)
    second = await operations.register_call(call)
    assert first.call_id == second.call_id
    assert len(portal.calls) == 1
    assert portal.calls[first.call_id].params["TYPE"] == 1


async def test_offer_registers_the_call_without_creating_and_shows_the_card(portal, operations):
    call = await operations.register_call(CallToRegister("1700000000.3", Direction.INCOMING, CLIENT, LINE,
                                                         user_id=11, create=False, show=True))
    assert portal.records["lead"] == {}
    assert (portal.calls[call.call_id].params["CRM_CREATE"], portal.calls[call.call_id].params["SHOW"]) == (0, 1)
    await operations.show_card(call.call_id, [12])
    assert portal.calls[call.call_id].shown_to == {11, 12}
    await operations.hide_card(call.call_id, [11, 12])
    assert portal.calls[call.call_id].shown_to == set()


async def test_retried_create_after_a_lost_answer_finds_the_first_record(portal, operations):
    portal.lose_answers_next(1, seconds=1.5)
    with pytest.raises(RemoteCrmUnavailable):
        await operations.create_record(lead("call-4:lead"))
    again = await operations.create_record(lead("call-4:lead"), look_first=True)
    assert len(portal.records_with_origin("lead", "call-4:lead")) == 1
    assert portal.records_with_origin("lead", "call-4:lead")[0]["ID"] == str(again)


async def test_simple_mode_deal_and_contact_created_in_one_batch_with_the_pipeline(portal, operations):
    contact = NewRecord(EntityType.CONTACT, "Client", "call-5:contact", "CALL", assigned_by_id=11, phone=CLIENT)
    deal = NewRecord(EntityType.DEAL, "Call from client", "call-5:deal", "CALL", assigned_by_id=11, category_id=3,
                     links={"CONTACT_ID": "$result[contact]"})
    call = CallToRegister("1700000000.5", Direction.INCOMING, CLIENT, LINE, user_id=11,
                          entity=EntityType.CONTACT, entity_id="$result[contact]")
    done = await operations.client.batch([create_command("contact", contact), create_command("deal", deal),
                                          register_command("call", call)])
    assert done.ok, done.errors
    created_deal = portal.records["deal"][done.results["deal"]]
    assert (created_deal["CATEGORY_ID"], created_deal["CONTACT_ID"]) == ("3", str(done.results["contact"]))
    assert portal.calls[done.results["call"]["CALL_ID"]].params["CRM_ENTITY_ID"] == done.results["contact"]
    assert portal.requests == 2  # user.get for the directory, then this one batch
    assert portal.violations == []


async def test_responsible_changed_on_the_record(portal, operations):
    lead_id = await operations.create_record(lead("call-6:lead"))
    await operations.set_responsible(EntityType.LEAD, lead_id, 11)
    assert portal.records["lead"][lead_id]["ASSIGNED_BY_ID"] == 11


@pytest.mark.parametrize(("portal_mode", "configured", "mismatch"), [
    (1, CrmMode.CLASSIC, False), (2, CrmMode.SIMPLE, False), (2, CrmMode.CLASSIC, True), (1, CrmMode.SIMPLE, True)])
async def test_crm_mode_of_the_portal_compared_with_the_config(portal, operations, portal_mode, configured, mismatch):
    portal.crm_mode = portal_mode
    message = await operations.mode_mismatch(configured)
    assert (message is not None) == mismatch
    if mismatch:
        assert f"crm.mode is {configured.value}" in message and "set crm.mode:" in message


@pytest.mark.parametrize(("disposition", "cancelled", "code"), [
    (Disposition.ANSWERED, False, "200"), (Disposition.MISSED, False, "304"), (Disposition.BUSY, False, "486"),
    (Disposition.MISSED, True, "603-S"), (Disposition.FAILED, False, "OTHER")])
def test_disposition_gives_the_finish_status_code(disposition, cancelled, code):
    assert finish_status(disposition, cancelled_by_caller=cancelled).value == code


async def test_lookup_passes_writes_waiting_for_the_bucket_and_answers_within_the_deadline(portal, operations):
    portal.add_record("contact", {"NAME": "Client", "ASSIGNED_BY_ID": "11",
                                  "PHONE": [{"VALUE": CLIENT, "VALUE_TYPE": "WORK"}]})
    bucket = operations.client.bucket
    while bucket.wait_seconds() == 0:  # the writes' share of the burst is used up
        await bucket.acquire()
    waiting_write = asyncio.ensure_future(operations.create_record(lead("call-7:lead")))
    try:
        found = await operations.find_client(CLIENT, deadline_seconds=0.3)
        assert found.responsible == "alice"
        assert not waiting_write.done()
    finally:
        await waiting_write
    assert len(portal.records_with_origin("lead", "call-7:lead")) == 1


async def test_lookup_on_a_silent_portal_gives_up_at_the_deadline(portal, operations):
    portal.time_out_next(1, seconds=1.0)
    with pytest.raises(RemoteCrmUnavailable, match="no answer within 200 ms"):
        await operations.find_client(CLIENT, deadline_seconds=0.2)
