"""The webhook adapter behind the real outbox: each command becomes its signed events at the
in-test receiver, in order, and a failure is retried with the same event ids. What the webhook
CRM holds afterwards, and its lookup URL, are in the contract suite (tests/crm/test_contract.py)."""
from __future__ import annotations

from agi_daemon.core.commands import CallReport, ChangeResponsible, CreateCallRecords, LogCall
from agi_daemon.core.model import CrmMode
from agi_daemon.crm.outbox import Delivery, Outbox
from agi_daemon.crm.webhook import signing
from agi_daemon.crm.webhook.adapter import WebhookCrm
from tests.crm.test_outbox import call_of, delivering
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
                     ("records.created", "W1/records.created"), ("responsible.changed", "W1/responsible.changed/bob"),
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
