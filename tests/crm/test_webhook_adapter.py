"""The webhook adapter behind the real outbox: each command becomes its signed events at the
in-test receiver, in order, and a failure is retried with the same event ids. What the webhook
CRM holds afterwards, and its lookup URL, are in the contract suite (tests/crm/test_contract.py)."""
from __future__ import annotations

import pytest

from agi_daemon.core.commands import CallReport, ChangeResponsible, CreateCallRecords, LogCall
from agi_daemon.core.decisions import RoutingStatus
from agi_daemon.core.model import CrmMode, Direction
from agi_daemon.core.ports import CrmUnavailable
from agi_daemon.core.rules import CallEntry
from agi_daemon.crm.outbox import Delivery, Outbox
from agi_daemon.crm.webhook import signing
from agi_daemon.crm.webhook.adapter import WebhookCrm
from tests.crm.test_bitrix24_adapter import routing_through
from tests.crm.test_bitrix24_client import PROXY_PAGE
from tests.crm.test_outbox import call_of, delivering, rows
from tests.crm.test_webhook_sender import SECRET, receiver, sender  # noqa: F401  (fixtures)
from tests.fakes.polling import eventually


async def test_a_new_client_call_posts_started_created_responsible_and_ended_events_once_each(
        crm, new_client, receiver, sender):  # noqa: F811
    adapter = WebhookCrm(sender, deadline_seconds=0.3, mode=CrmMode.CLASSIC, pipeline="general")
    outbox = Outbox(crm, Delivery(crm, adapter), first_delay=0.01)
    receiver.answers = [(503, {"Retry-After": "0"})]  # the first POST fails: retried under the same id
    async with delivering(outbox):
        await outbox.submit(CreateCallRecords(new_client("+33611000001", "W1")))
        await outbox.submit(ChangeResponsible("W1", "+33611000001", "bob", 1))
        await outbox.submit(LogCall(call_of("W1", "+33611000001"), CallReport.HANGUP, "+33611000001"))
        await outbox.submit(LogCall(call_of("W1", "+33611000001"), CallReport.TRACKED, "+33611000001"))
        await eventually(lambda: len(receiver.received) >= 6, timeout=5)
    kinds = [(event["type"], event["id"]) for event, _, _ in receiver.received]
    assert kinds == [("call.started", "W1/call.started"), ("call.started", "W1/call.started"),
                     ("records.created", "W1/records.created"), ("responsible.changed", "W1/responsible.changed/1/bob"),
                     ("call.ended", "W1/call.ended"), ("call.ended", "W1/call.ended")]
    created = receiver.received[2][0]["data"]
    assert (created["phone"], created["source"], created["responsible"]) == ("+33611000001", "CALL", "alice")
    moved = receiver.received[3][0]["data"]
    assert moved["records"] == created["records"] and moved["responsible"] == "bob"
    assert receiver.received[4][0]["data"]["entity"] == created["primary"]  # the call on the created lead
    for _, body, headers in receiver.received:
        assert signing.verify(SECRET, headers[signing.TIMESTAMP_HEADER], body, headers[signing.SIGNATURE_HEADER],
                              float(headers[signing.TIMESTAMP_HEADER]))



async def test_contact_from_the_call_window_is_one_records_created_event_naming_one_contact_and_no_card(
        crm, new_client, receiver, sender):  # noqa: F811
    from dataclasses import replace

    from agi_daemon.core.commands import CallCardChange
    from agi_daemon.core.model import Direction
    adapter = WebhookCrm(sender, deadline_seconds=0.3, mode=CrmMode.CLASSIC, pipeline="general")
    outbox = Outbox(crm, Delivery(crm, adapter), first_delay=0.01)
    async with delivering(outbox):
        await outbox.submit(CallCardChange("W2", "+33611000002", Direction.INCOMING, "+33184880000", ("alice",), True))
        await outbox.submit(CreateCallRecords(replace(new_client("+33611000002", "W2"), contact_only=True)))
        await outbox.submit(LogCall(call_of("W2", "+33611000002"), CallReport.TRACKED, "+33611000002"))
        await eventually(lambda: len(receiver.received) >= 3, timeout=5)
    assert [event["type"] for event, _, _ in receiver.received] == ["call.started", "records.created", "call.ended"]
    created = receiver.received[1][0]["data"]
    [record] = created["records"]
    assert record["type"] == "contact" and created["primary"] == f"contact:{record['id']}"
    assert receiver.received[2][0]["data"]["entity"] == created["primary"]  # the call logged on the contact


async def test_event_answered_by_a_page_not_in_utf8_is_retried_and_lands_once(crm, new_client, receiver, sender):  # noqa: F811
    """A proxy in front of the receiver answers the first POST with its latin-1 error page:
    the outbox retries it (same event id), and every event then lands once."""
    adapter = WebhookCrm(sender, deadline_seconds=0.3, mode=CrmMode.CLASSIC, pipeline="general")
    outbox = Outbox(crm, Delivery(crm, adapter), first_delay=0.01)
    receiver.answers = [(503, {}, PROXY_PAGE)]
    async with delivering(outbox):
        await outbox.submit(CreateCallRecords(new_client("+33611000003", "W3")))
        await eventually(lambda: len(receiver.received) >= 3, timeout=5)
    assert [(event["type"], event["id"]) for event, _, _ in receiver.received] == [
        ("call.started", "W3/call.started"), ("call.started", "W3/call.started"),
        ("records.created", "W3/records.created")]
    assert (await rows(crm))["W3/records"][0] == "delivered"


async def test_lookup_answered_by_a_page_not_in_utf8_is_the_crm_unavailable_and_the_new_caller_still_gets_records(
        crm, receiver, sender):  # noqa: F811
    adapter = WebhookCrm(sender, deadline_seconds=0.3, mode=CrmMode.CLASSIC, pipeline="general")
    receiver.lookup_answers = [(502, PROXY_PAGE)] * 5  # this lookup, then every try of the call's
    with pytest.raises(CrmUnavailable, match="HTTP 502"):
        await adapter.find_by_phone("+33611223398")
    async with routing_through(adapter, crm) as (routing, pending):
        decision = await routing.route(CallEntry(Direction.INCOMING, "0184880000", "0611223398"), "W4")
        assert await pending.settle("W4", 5)
        await eventually(lambda: len(receiver.received) >= 2, timeout=5)
    assert decision.status is RoutingStatus.FALLBACK and decision.route is not None  # the queue group
    assert receiver.lookup_answers == []  # every lookup met the page
    assert [event["type"] for event, _, _ in receiver.received] == ["call.started", "records.created"]
    assert receiver.received[1][0]["data"]["phone"] == "+33611223398"


async def test_a_known_clients_call_is_logged_on_its_record_when_the_lookup_is_slower_than_a_call_may_wait(
        crm, receiver, sender):  # noqa: F811
    """The lookup answers in 0.5 s, past the 0.3 s a call waits for it: the call was routed
    without it, but logging the call waits for no one: call.ended names the known client."""
    adapter = WebhookCrm(sender, deadline_seconds=0.3, mode=CrmMode.CLASSIC, pipeline="general")
    outbox = Outbox(crm, Delivery(crm, adapter), first_delay=0.01)
    receiver.delay = 0.4  # the sender's own time limit, for an event, is 0.5 s (the fixture's)
    async with delivering(outbox):
        await outbox.submit(LogCall(call_of("W9", "+33612000001"), CallReport.TRACKED, "+33612000001"))
        await eventually(lambda: receiver.received, timeout=5)
    [(event, _, _)] = receiver.received
    assert (event["type"], event["data"]["entity"]) == ("call.ended", "contact:12")
