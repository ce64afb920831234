"""The Bitrix24 adapter against the in-test portal, command by command: a delivery repeated
after an answer the portal ran but lost lands once; R10 touches only what the call created;
a call is finished once."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest

from agi_daemon.core.commands import CallLedger, CallReport, ChangeResponsible, CreateCallRecords, LogCall
from agi_daemon.core.decisions import RoutingStatus
from agi_daemon.core.model import CrmMode, Direction
from agi_daemon.core.ports import CrmUnavailable
from agi_daemon.core.rules import CallEntry
from agi_daemon.crm.bitrix24 import adapter as adapter_module
from agi_daemon.crm.bitrix24.adapter import Bitrix24Crm
from agi_daemon.crm.bitrix24.auth import WebhookAuth
from agi_daemon.crm.bitrix24.bucket import LeakyBucket
from agi_daemon.crm.bitrix24.client import Bitrix24Client
from agi_daemon.crm.bitrix24.operations import EmployeeDirectory, EmployeeLink
from agi_daemon.crm.outbox import Delivery, Outbox
from agi_daemon.services.pending import PendingWork
from agi_daemon.services.routed_calls import RoutedCalls
from agi_daemon.services.routing import RoutingService
from tests.crm.test_bitrix24_client import PROXY_PAGE
from tests.crm.test_outbox import call_of, delivering, rows
from tests.fakes.clock import FixedClock
from tests.fakes.polling import eventually
from tests.fakes.rules import make_rules

PHONE = "+33611000001"


@pytest.fixture
async def adapter(portal):
    client = Bitrix24Client(WebhookAuth(portal.webhook_url), LeakyBucket(2, 50), timeout_seconds=0.5)
    directory = EmployeeDirectory([EmployeeLink("alice", 11, "101"), EmployeeLink("bob", None, "102")])
    adapter = Bitrix24Crm(client, directory, ["alice", "bob"], deadline_seconds=0.3, pipelines={"general": 0},
                          mode=CrmMode.CLASSIC)
    await adapter.open()
    yield adapter
    await adapter.close()


def lead_id(portal) -> str:
    [lead] = portal.records["lead"].values()
    return lead["ID"]


def learned(ledger: CallLedger, update) -> CallLedger:
    return CallLedger(ledger.linkedid, update.created or ledger.created, update.joined or ledger.joined,
                      {**ledger.remote_ids, **update.remote_ids}, update.remote_call_id or ledger.remote_call_id,
                      update.logged or ledger.logged)


async def test_records_delivered_again_after_a_lost_answer_are_created_and_registered_once(portal, adapter, new_client):
    command = CreateCallRecords(new_client(PHONE, "B1"))
    batch, batches = adapter.client.batch, []

    async def losing_the_create(commands, **kwargs):
        batches.append([c.method for c in commands])
        if len(batches) == 2:  # the create batch runs on the portal; its answer never comes back
            portal.lose_answers_next(1, seconds=1.0)
        return await batch(commands, **kwargs)

    adapter.client.batch = losing_the_create
    with pytest.raises(CrmUnavailable):
        await adapter.deliver(command, CallLedger("B1"))
    assert len(portal.records["lead"]) == 1  # created, but the adapter could not know
    update = await adapter.deliver(command, CallLedger("B1"))  # the outbox's retry
    assert update.created is not None and str(update.created.lead.id) == lead_id(portal)
    assert "crm.lead.add" not in batches[-1]  # found by its ORIGIN_ID: not created again
    [lead] = portal.records_with_origin("lead", "B1/records")
    assert (lead["SOURCE_ID"], str(lead["ASSIGNED_BY_ID"])) == ("CALL", "11")
    [call] = [c for c in portal.calls.values() if c.params["EXTERNAL_CALL_ID"] == "B1"]
    assert call.params["CRM_ENTITY_ID"] == int(lead["ID"]) and update.remote_call_id == call.call_id


async def test_transfer_reassigns_only_what_the_call_created_and_the_call_is_finished_once(portal, adapter, new_client):
    known = portal.add_record("contact", {"NAME": "Known", "ASSIGNED_BY_ID": 11,
                                          "PHONE": [{"VALUE": "+33611000009", "VALUE_TYPE": "WORK"}]})
    ledger = CallLedger("B2")
    ledger = learned(ledger, await adapter.deliver(CreateCallRecords(new_client(PHONE, "B2")), ledger))
    await adapter.deliver(ChangeResponsible("B2", PHONE, "bob", 1), ledger)  # bob: matched by internal phone 102
    await adapter.deliver(ChangeResponsible("B3", "+33611000009", "bob", 1), CallLedger("B3"))  # created nothing
    [lead] = portal.records["lead"].values()
    assert str(lead["ASSIGNED_BY_ID"]) == "12" and str(portal.records["contact"][known]["ASSIGNED_BY_ID"]) == "11"
    ledger = learned(ledger, await adapter.deliver(LogCall(call_of("B2", PHONE), CallReport.HANGUP, PHONE), ledger))
    requests = portal.requests
    await adapter.deliver(LogCall(call_of("B2", PHONE), CallReport.TRACKED, PHONE), ledger)
    assert portal.requests == requests  # Bitrix24 cannot un-finish: the later report sends nothing
    [call] = portal.calls.values()
    assert call.finished is not None and call.finished["STATUS_CODE"] == "200" and call.registrations == 1


async def test_contact_from_the_call_window_lands_once_as_a_contact_bound_to_the_call(portal, adapter, new_client):
    """The call window's "create contact" (an `offer` line): one crm.contact.add with ORIGIN_ID,
    found again (not added twice) by a delivery repeated after a lost answer; no lead."""
    from dataclasses import replace

    from agi_daemon.core.commands import RecordOffer
    from agi_daemon.core.model import Offer
    offer = Offer("B4", new_client(PHONE, "B4").direction, new_client(PHONE, "B4").line, PHONE, ("alice",),
                  call_of("B4", PHONE).started_at)
    ledger = learned(CallLedger("B4"), await adapter.deliver(RecordOffer(offer), CallLedger("B4")))
    command = CreateCallRecords(replace(new_client(PHONE, "B4"), name="Jeanne Martin", contact_only=True))
    batch, batches = adapter.client.batch, []

    async def losing_the_add(commands, **kwargs):
        batches.append([c.method for c in commands])
        if "crm.contact.add" in batches[-1] and len(batches) == 2:  # runs on the portal, its answer is lost
            portal.lose_answers_next(1, seconds=1.0)
        return await batch(commands, **kwargs)

    adapter.client.batch = losing_the_add
    with pytest.raises(CrmUnavailable):
        await adapter.deliver(command, ledger)
    assert len(portal.records["contact"]) == 1  # created, but the adapter could not know
    update = await adapter.deliver(command, ledger)  # the outbox's retry
    assert "crm.contact.add" not in batches[-1]  # found by its ORIGIN_ID: not added again
    [contact] = portal.records_with_origin("contact", "B4/records")
    assert len(portal.records["contact"]) == 1 and portal.records["lead"] == {}
    assert (contact["NAME"], contact["SOURCE_ID"], str(contact["ASSIGNED_BY_ID"])) == ("Jeanne Martin", "CALL", "11")
    assert contact["PHONE"] == [{"VALUE": PHONE, "VALUE_TYPE": "WORK"}]
    assert update.created.primary.type.value == "contact" and str(update.created.primary.id) == contact["ID"]
    ledger = learned(ledger, update)
    await adapter.deliver(LogCall(call_of("B4", PHONE), CallReport.TRACKED, PHONE), ledger)
    [call] = portal.calls.values()  # the offer's registration, finished once
    assert call.finished is not None and call.registrations == 1
    assert portal.bindings_of(call.call_id) == [("contact", int(contact["ID"]))]  # the call is logged on the contact
    assert portal.violations == []


async def test_call_card_registers_a_call_not_yet_registered_and_shows_nothing_once_it_is_finished(portal, adapter):
    """A known client's call has no registration before its finish: the card registers it
    (SHOW=0), then shows and hides it for the employees' users; after the finish nothing."""
    from agi_daemon.core.commands import CallCardChange
    from agi_daemon.core.model import Direction
    known = portal.add_record("contact", {"NAME": "Known", "ASSIGNED_BY_ID": 12,
                                          "PHONE": [{"VALUE": "+33611000005", "VALUE_TYPE": "WORK"}]})

    def card(employees, show):
        return CallCardChange("B5", "+33611000005", Direction.INCOMING, "+33184880000", employees, show)

    ledger = learned(CallLedger("B5"), await adapter.deliver(card(("alice", "bob"), True), CallLedger("B5")))
    [call] = portal.calls.values()
    assert (str(call.params["SHOW"]), call.params["CRM_ENTITY_TYPE"], call.params["CRM_ENTITY_ID"]) == \
        ("0", "CONTACT", known)  # bound to the client the portal finds
    ledger = learned(ledger, await adapter.deliver(card(("alice",), False), ledger))
    ledger = learned(ledger, await adapter.deliver(LogCall(call_of("B5", "+33611000005"), CallReport.TRACKED,
                                                           "+33611000005"), ledger))
    requests = portal.requests
    await adapter.deliver(card(("bob",), False), ledger)  # the finish closed the card: nothing to send
    assert portal.requests == requests and call.registrations == 1
    assert portal.cards_of(call.call_id) == [("show", 11), ("show", 12), ("hide", 11)]
    assert call.finished is not None and call.finished["USER_ID"] == 11  # call_of: nobody answered; alice first


def offered(adapter, new_client, linkedid: str, **plan):
    """An `offer` line's call: registered before any record exists (CRM_CREATE=0), and the
    records command the call window's "create" sends for it."""
    from agi_daemon.core.commands import RecordOffer
    from agi_daemon.core.model import Offer
    records = new_client(PHONE, linkedid, **plan)
    offer = Offer(linkedid, records.direction, records.line, PHONE, ("alice",), call_of(linkedid, PHONE).started_at)
    return RecordOffer(offer), CreateCallRecords(records)


async def test_lead_created_during_an_offer_call_gets_the_call_bound_once_even_when_the_finish_lands_twice(
        portal, adapter, new_client):
    """The agent creates the lead from the call window while the caller talks: the portal's call
    (registered unbound) ends up logged on the lead, bound once although the finish is delivered
    again with the same ledger (a kill -9 before the outbox committed it)."""
    offer, create = offered(adapter, new_client, "B10")
    ledger = learned(CallLedger("B10"), await adapter.deliver(offer, CallLedger("B10")))
    ledger = learned(ledger, await adapter.deliver(create, ledger))
    finish = LogCall(call_of("B10", PHONE), CallReport.TRACKED, PHONE)
    update = await adapter.deliver(finish, ledger)
    await adapter.deliver(finish, ledger)  # redelivered: the first delivery was never marked done
    [call] = portal.calls.values()
    assert call.registrations == 1 and call.params["CRM_ENTITY_ID"] is None  # registered before the lead existed
    assert portal.bindings_of(call.call_id) == [("lead", int(lead_id(portal)))]
    assert update.remote_ids["call:activity"] == str(call.activity_id)
    assert portal.violations == []


async def test_lead_created_after_an_offer_call_ended_binds_the_finished_call_once(portal, adapter, new_client):
    """The agent clicks "create lead" after the caller hung up: the records command binds the
    finished call's activity, once across a redelivery, and registers no second call."""
    offer, create = offered(adapter, new_client, "B11")
    ledger = learned(CallLedger("B11"), await adapter.deliver(offer, CallLedger("B11")))
    ledger = learned(ledger, await adapter.deliver(LogCall(call_of("B11", PHONE), CallReport.TRACKED, PHONE), ledger))
    [call] = portal.calls.values()
    assert portal.bindings_of(call.call_id) == []  # finished before any record existed
    update = await adapter.deliver(create, ledger)
    await adapter.deliver(create, ledger)  # redelivered after a kill -9: finds the lead by ORIGIN_ID
    assert len(portal.calls) == 1 and len(portal.records["lead"]) == 1
    assert portal.bindings_of(call.call_id) == [("lead", int(lead_id(portal)))]
    assert update.remote_call_id == call.call_id
    assert portal.violations == []


async def test_deal_created_during_an_offer_call_in_simple_mode_gets_the_call_on_the_deal_and_its_contact(
        portal, new_client):
    """Simple mode: the call ends up on the deal and on the deal's contact, as the portal binds
    a call registered on a deal."""
    client = Bitrix24Client(WebhookAuth(portal.webhook_url), LeakyBucket(2, 50), timeout_seconds=0.5)
    simple = Bitrix24Crm(client, EmployeeDirectory([EmployeeLink("alice", 11, "101")]), ["alice"],
                         deadline_seconds=0.3, pipelines={"general": 0}, mode=CrmMode.SIMPLE)
    await simple.open()
    try:
        offer, create = offered(simple, new_client, "B12", mode=CrmMode.SIMPLE)
        ledger = learned(CallLedger("B12"), await simple.deliver(offer, CallLedger("B12")))
        ledger = learned(ledger, await simple.deliver(create, ledger))
        await simple.deliver(LogCall(call_of("B12", PHONE), CallReport.TRACKED, PHONE), ledger)
    finally:
        await simple.close()
    [call] = portal.calls.values()
    [deal] = portal.records["deal"].values()
    [contact] = portal.records["contact"].values()
    assert portal.bindings_of(call.call_id) == [("deal", int(deal["ID"])), ("contact", int(contact["ID"]))]
    assert portal.violations == []


async def test_call_registered_on_its_records_is_not_bound_again_after_the_finish(portal, adapter, new_client):
    """A line that creates the records itself registers the call on them: the finish binds
    nothing more (no binding request at all)."""
    ledger = learned(CallLedger("B13"), await adapter.deliver(CreateCallRecords(new_client(PHONE, "B13")),
                                                              CallLedger("B13")))
    await adapter.deliver(LogCall(call_of("B13", PHONE), CallReport.TRACKED, PHONE), ledger)
    [call] = portal.calls.values()
    assert portal.bindings_of(call.call_id) == [("lead", int(lead_id(portal)))]
    assert not any(method.startswith("crm.activity.binding") for method in portal.methods)


async def test_number_known_meanwhile_joins_the_finished_offer_call_without_a_second_registration(
        portal, adapter, new_client):
    """The agent clicks "create" late, and the number became a client meanwhile (created on the
    portal by hand): the call joins it and the portal keeps one call."""
    offer, create = offered(adapter, new_client, "B14")
    ledger = learned(CallLedger("B14"), await adapter.deliver(offer, CallLedger("B14")))
    ledger = learned(ledger, await adapter.deliver(LogCall(call_of("B14", PHONE), CallReport.TRACKED, PHONE), ledger))
    known = portal.add_record("contact", {"NAME": "Known", "PHONE": [{"VALUE": PHONE, "VALUE_TYPE": "WORK"}]})
    update = await adapter.deliver(create, ledger)
    [call] = portal.calls.values()
    assert update.joined is not None and update.joined.id == known and update.remote_call_id == call.call_id
    assert portal.records["lead"] == {} and portal.violations == []


@contextlib.asynccontextmanager
async def routing_through(adapter, store) -> AsyncIterator[tuple[RoutingService, PendingWork]]:
    """The routing service asking `adapter` who calls, and the real outbox on `store`
    delivering to `adapter` what a call creates (the daemon's wiring, without Asterisk)."""
    outbox = Outbox(store, Delivery(store, adapter), first_delay=0.01)
    rules = make_rules()
    async with asyncio.TaskGroup() as tasks, delivering(outbox):
        pending = PendingWork(tasks.create_task)
        yield RoutingService(lambda: rules, adapter, FixedClock(), pending, commands=outbox, deadline=0.3,
                             routed=RoutedCalls(), retry_delays=(0.01, 0.01)), pending


async def test_lookup_answered_by_a_page_not_in_utf8_is_the_crm_unavailable_and_the_new_caller_still_gets_a_lead(
        portal, adapter, crm):
    """A proxy in front of the portal answers the lookups with its latin-1 error page: the
    lookup fails as the CRM being unavailable, the call is routed to the queue group, and the
    new caller's lead lands once the portal answers again."""
    portal.fail_next(5, 502, None, body=PROXY_PAGE)  # this lookup, then every try of the call's
    with pytest.raises(CrmUnavailable, match="HTTP 502"):
        await adapter.find_by_phone("+33611223399")
    async with routing_through(adapter, crm) as (routing, pending):
        decision = await routing.route(CallEntry(Direction.INCOMING, "0184880000", "0611223399"), "B20")
        assert await pending.settle("B20", 5)
        await eventually(lambda: len(portal.calls) == 1, timeout=5)
    assert decision.status is RoutingStatus.FALLBACK and decision.route is not None  # the queue group
    assert portal.failures_answered == 5  # every lookup met the page
    [lead] = portal.records["lead"].values()
    assert lead["ORIGIN_ID"] == "B20/records" and lead["PHONE"] == [{"VALUE": "+33611223399", "VALUE_TYPE": "WORK"}]
    assert portal.violations == []


async def test_write_answered_by_a_page_not_in_utf8_is_retried_and_lands_once(portal, adapter, crm, new_client):
    outbox = Outbox(crm, Delivery(crm, adapter), first_delay=0.01)
    portal.fail_next(1, 502, None, body=PROXY_PAGE)
    async with delivering(outbox):
        await outbox.submit(CreateCallRecords(new_client(PHONE, "B21")))
        await eventually(lambda: len(portal.calls) == 1, timeout=5)
    [lead] = portal.records["lead"].values()
    assert lead["ORIGIN_ID"] == "B21/records"
    assert portal.failures_answered == 1  # the first try met the page: retried
    assert (await rows(crm))["B21/records"][0] == "delivered"



async def test_employees_changed_while_the_portal_does_not_answer_are_read_at_the_next_delivery(
        portal, adapter, new_client, monkeypatch):
    """A reload adds dave while the portal hangs: the reload does not wait past its bound, and
    the next delivery reads the users again, so dave's lead is his on the portal."""
    monkeypatch.setattr(adapter_module, "EMPLOYEES_READ_S", 0.3)
    portal.add_user(14, "Dave", "104")
    portal.time_out_next(1, seconds=2.0)
    links = [EmployeeLink("alice", 11, "101"), EmployeeLink("bob", None, "102"), EmployeeLink("dave", None, "104")]
    async with asyncio.timeout(2):
        await adapter.employees_changed(links, ["alice", "bob", "dave"])
    portal.heal()
    update = await adapter.deliver(CreateCallRecords(new_client("+33611000044", "D1", responsible="dave")),
                                   CallLedger("D1"))
    [lead] = portal.records_with_origin("lead", "D1/records")
    assert update.created is not None and str(lead["ASSIGNED_BY_ID"]) == "14"


async def test_employees_users_not_read_at_start_are_read_at_the_next_delivery(portal, new_client):
    """The portal fails the start's read of the users: bob (no crm_user, his extension 102 is
    user 12's internal phone) is not taken for a user the portal lacks; the delivery reads the
    users again, so his lead is his on the portal, not the fallback user's."""
    portal.fail_next(1, 503, None)
    client = Bitrix24Client(WebhookAuth(portal.webhook_url), LeakyBucket(2, 50), timeout_seconds=0.5)
    directory = EmployeeDirectory([EmployeeLink("alice", 11, "101"), EmployeeLink("bob", None, "102")])
    adapter = Bitrix24Crm(client, directory, ["alice", "bob"], deadline_seconds=0.3, pipelines={"general": 0},
                          mode=CrmMode.CLASSIC)
    await adapter.open()
    try:
        assert portal.failures_answered == 1  # the start's read met the failure
        await adapter.deliver(CreateCallRecords(new_client("+33611000055", "U1", responsible="bob")), CallLedger("U1"))
    finally:
        await adapter.close()
    [lead] = portal.records_with_origin("lead", "U1/records")
    assert str(lead.get("ASSIGNED_BY_ID")) == "12"


async def test_portal_refusing_to_name_the_users_stops_no_delivery_and_is_asked_again_later(portal, new_client):
    """user.get refused (a webhook without the `user` scope): the leads are still created, with
    bob unmatched, and the deliveries do not spend a request each on asking again; past the
    hold-off (here 0.2 s) the next delivery asks, and gives bob his user."""
    portal.fail_next(1, 403, "insufficient_scope", "The request requires higher privileges")  # the start's read
    client = Bitrix24Client(WebhookAuth(portal.webhook_url), LeakyBucket(2, 50), timeout_seconds=0.5)
    directory = EmployeeDirectory([EmployeeLink("alice", 11, "101"), EmployeeLink("bob", None, "102")])
    adapter = Bitrix24Crm(client, directory, ["alice", "bob"], deadline_seconds=0.3, pipelines={"general": 0})
    adapter.users_refused_retry_s = 0.2
    await adapter.open()
    try:
        for phone, linkedid in (("+33611000066", "U2"), ("+33611000067", "U3")):  # within the hold-off
            await adapter.deliver(CreateCallRecords(new_client(phone, linkedid, responsible="bob")), CallLedger(linkedid))
        assert portal.failures_answered == 1  # not asked again for each delivery
        await asyncio.sleep(0.25)
        portal.fail_next(1, 403, "insufficient_scope", "The request requires higher privileges")
        for phone, linkedid in (("+33611000068", "U4"), ("+33611000077", "U5")):  # refused again, then answered
            await asyncio.sleep(0.25)
            await adapter.deliver(CreateCallRecords(new_client(phone, linkedid, responsible="bob")), CallLedger(linkedid))
    finally:
        await adapter.close()
    assert portal.failures_answered == 2
    assigned = [portal.records_with_origin("lead", f"{linkedid}/records")[0].get("ASSIGNED_BY_ID")
                for linkedid in ("U2", "U3", "U4", "U5")]
    assert [str(user) if user else None for user in assigned] == [None, None, None, "12"]


async def test_records_for_a_responsible_without_a_portal_user_say_who_gets_them(portal, adapter, new_client, caplog):
    """A write queued for alice while the portal was down, delivered after a reload removed her:
    the portal gives the records to the webhook's own user. That used to happen in silence."""
    plan = new_client(PHONE, "B9", responsible="carol")  # no portal user: carol is not in the directory
    with caplog.at_level(logging.WARNING, logger="agi_daemon.crm.bitrix24.adapter"):
        await adapter.deliver(CreateCallRecords(plan), CallLedger("B9"))
    [lead] = portal.records_with_origin("lead", "B9/records")
    assert "ASSIGNED_BY_ID" not in lead or not lead["ASSIGNED_BY_ID"]
    [said] = [r.getMessage() for r in caplog.records if "no portal user" in r.getMessage()]
    assert "carol" in said and "B9" in said and "webhook's own user" in said
