"""The signed-webhook sender against an in-test receiver (aiohttp on 127.0.0.1, port 0)."""
from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime

import pytest
from aiohttp import web

from agi_daemon.core.crm_errors import RemoteCrmRejected, RemoteCrmUnavailable
from agi_daemon.core.model import (
    CallRecord,
    CreatedRecords,
    Direction,
    Disposition,
    EntityRef,
    EntityType,
    Transfer,
    TransferKind,
)
from agi_daemon.crm.remote_answer import MAX_RETRY_AFTER_SECONDS
from agi_daemon.crm.webhook import events, signing
from agi_daemon.crm.webhook.sender import WebhookSender
from tests.crm.test_bitrix24_client import PROXY_PAGE

SECRET = "hm4c-k3y-for-tests"
AT = datetime(2026, 12, 2, 3, 0, 0, tzinfo=UTC)


class Receiver:
    """Keeps what it receives; answers each of `answers` in turn, (status, headers) or (status,
    headers, body: bytes sent as is, text/html with no charset), then 204. Lookups answer each
    of `lookup_answers` (status, body) the same way first."""

    def __init__(self) -> None:
        self.received: list[tuple[dict, bytes, dict]] = []
        self.answers: list[tuple[int, dict] | tuple[int, dict, bytes]] = []
        self.lookup_answers: list[tuple[int, bytes]] = []
        self.delay = 0.0
        self.contacts = {"+33612000001": {"found": True, "entity": "contact:12", "responsible": "alice", "name": "Client"}}

    async def event(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((json.loads(body), body, dict(request.headers)))
        if self.answers:
            status, headers, *body = self.answers.pop(0)
            if body:
                return web.Response(status=status, body=body[0], headers={"Content-Type": "text/html", **headers})
            return web.Response(status=status, text="try later" if status >= 500 else "no such thing", headers=headers)
        return web.Response(status=204)

    async def moved(self, request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(f"/lookup?{request.query_string}")

    async def lookup(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay)
        if self.lookup_answers:
            status, body = self.lookup_answers.pop(0)
            return web.Response(status=status, body=body, headers={"Content-Type": "text/html"})
        if not signing.verify(SECRET, request.headers[signing.TIMESTAMP_HEADER], request.query_string.encode(),
                              request.headers[signing.SIGNATURE_HEADER], time.time()):
            return web.Response(status=401)
        return web.json_response(self.contacts.get(request.query["phone"], {"found": False}))


@pytest.fixture
async def receiver():
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/events", receiver.event)
    app.router.add_get("/lookup", receiver.lookup)
    app.router.add_get("/moved", receiver.moved)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    yield receiver
    await runner.cleanup()


@pytest.fixture
async def sender(receiver):
    sender = WebhookSender(f"{receiver.url}/events", SECRET, lookup_url=f"{receiver.url}/lookup", timeout_seconds=0.5)
    await sender.open()
    yield sender
    await sender.close()


def ended() -> CallRecord:
    return CallRecord("1700000000.1", Direction.INCOMING, "+33184880000", "+33612000001", Disposition.ANSWERED,
                      AT, datetime(2026, 12, 2, 3, 1, 0, tzinfo=UTC), answered_at=datetime(2026, 12, 2, 3, 0, 5, tzinfo=UTC),
                      answered_by="bob", employees=("alice", "bob"), ring_seconds=5, talk_seconds=55,
                      transfers=(Transfer("alice", "bob", TransferKind.BLIND),), entity=EntityRef(EntityType.LEAD, 7))


async def test_event_arrives_signed_with_its_idempotency_key(receiver, sender):
    await sender.send(events.call_ended(ended()))
    document, body, headers = receiver.received[0]
    assert signing.verify(SECRET, headers[signing.TIMESTAMP_HEADER], body, headers[signing.SIGNATURE_HEADER], time.time())
    assert not signing.verify("another-key", headers[signing.TIMESTAMP_HEADER], body,
                              headers[signing.SIGNATURE_HEADER], time.time())
    assert document["version"] == 1 and document["type"] == "call.ended"
    assert document["id"] == headers["Idempotency-Key"] == "1700000000.1/call.ended"
    assert document["at"] == "2026-12-02T03:01:00Z"
    assert document["data"]["transfers"] == [{"from": "alice", "to": "bob", "kind": "blind"}]
    assert (document["data"]["disposition"], document["data"]["talk_seconds"], document["data"]["entity"]) == (
        "answered", 55, "lead:7")


def _started(linkedid: str) -> events.WebhookEvent:
    return events.call_started(linkedid, AT, Direction.INCOMING, "+33184880000", "+33612000001", ("alice",))


def test_same_event_built_twice_has_the_same_id_and_body():
    created = CreatedRecords(EntityRef(EntityType.LEAD, 1), deal=EntityRef(EntityType.DEAL, 2),
                             contact=EntityRef(EntityType.CONTACT, 3))

    def build():
        return [events.call_started("L1", AT, Direction.INCOMING, "+33184880000", "+33612000001", ("alice",)),
                events.records_created("L1", AT, created, phone="+33612000001", source="CALL", responsible="alice",
                                       pipeline="general"),
                events.responsible_changed("L1", AT, created.all, "bob", 1)]

    first, second = build(), build()
    assert [event.body() for event in first] == [event.body() for event in second]
    assert len({event.id for event in first}) == 3
    assert json.loads(first[1].body())["data"]["records"] == [
        {"type": "lead", "id": 1}, {"type": "deal", "id": 2}, {"type": "contact", "id": 3}]


def test_a_call_sent_back_to_an_employee_it_was_with_is_a_new_responsible_event():
    """alice -> bob, bob -> carol, carol -> bob: the third change is not a repeat of the first
    (a receiver dropping it by id would leave the records with carol)."""
    lead = (EntityRef(EntityType.LEAD, 1),)
    ids = [events.responsible_changed("L1", AT, lead, employee, transfer).id
           for transfer, employee in enumerate(("bob", "carol", "bob"), start=1)]
    assert len(set(ids)) == 3


async def test_a_redirection_is_never_followed_and_says_what_to_fix(receiver, sender):
    """An auth proxy answering 302 to a login page: followed, the POST would become a GET the
    page answers 200 to (the event "delivered", lost); a 307 would send the signed body elsewhere."""
    for status in (302, 307):
        receiver.answers.append((status, {"Location": f"{receiver.url}/elsewhere"}))
        with pytest.raises(RemoteCrmRejected, match=f"HTTP {status}, redirected"):
            await sender.send(_started("L6"))
    assert len(receiver.received) == 2  # each sent once, to the configured URL only


async def lookup_once(address: str, lookup_path: str, secret: str = SECRET):
    """One lookup of +33612000001 by a sender of its own whose lookup_url is address + lookup_path."""
    sender = WebhookSender(f"{address}/events", secret, lookup_url=f"{address}{lookup_path}", timeout_seconds=2)
    await sender.open()
    try:
        return await sender.lookup("+33612000001", deadline_seconds=2)
    finally:
        await sender.close()


async def test_a_lookup_url_that_moved_is_followed(receiver):
    """A GET carries no body: the lookup follows a redirection (an http URL moved to https, say)."""
    match = await lookup_once(receiver.url, "/moved")
    assert match is not None and str(match.entity) == "contact:12"


@pytest.mark.parametrize(("status", "expected"), [
    (500, RemoteCrmUnavailable), (503, RemoteCrmUnavailable), (429, RemoteCrmUnavailable), (408, RemoteCrmUnavailable),
    (400, RemoteCrmRejected), (401, RemoteCrmRejected), (404, RemoteCrmRejected), (422, RemoteCrmRejected)])
async def test_receiver_status_becomes_retryable_or_permanent(receiver, sender, status, expected):
    receiver.answers.append((status, {}))
    with pytest.raises(expected) as raised:
        await sender.send(_started("L2"))
    assert f"HTTP {status}" in str(raised.value)


async def test_retry_after_of_the_receiver_is_handed_to_the_caller(receiver, sender):
    receiver.answers.append((503, {"Retry-After": "30"}))
    with pytest.raises(RemoteCrmUnavailable) as raised:
        await sender.send(_started("L3"))
    assert raised.value.retry_after_seconds == 30


@pytest.mark.parametrize(("header", "seconds"), [
    ("inf", None), ("nan", None), ("-5", None), ("1e9", MAX_RETRY_AFTER_SECONDS),
    ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER_SECONDS), ("Sun, 06 Nov 1994 08:49:37 GMT", 0.0), ("30", 30.0)])
async def test_retry_after_of_the_receiver_never_parks_the_caller_longer_than_the_maximum(receiver, sender, header, seconds):
    receiver.answers.append((503, {"Retry-After": header}))
    with pytest.raises(RemoteCrmUnavailable) as raised:
        await sender.send(_started("L3"))
    assert raised.value.retry_after_seconds == seconds


@pytest.mark.parametrize(("status", "expected"), [(502, RemoteCrmUnavailable), (400, RemoteCrmRejected)])
async def test_answer_not_in_utf8_is_classified_by_its_status(receiver, sender, status, expected):
    receiver.answers.append((status, {}, PROXY_PAGE))
    with pytest.raises(expected, match=f"HTTP {status} <html><body><h1>502 Passerelle d"):
        await sender.send(_started("L5"))
    receiver.answers.append((200, {}, PROXY_PAGE))
    await sender.send(_started("L5"))  # a 2xx is delivered, whatever its body


async def test_a_lookup_refused_with_the_number_quoted_shows_it_only_by_its_last_digits(receiver, sender, caplog):
    caplog.set_level(logging.DEBUG)
    receiver.lookup_answers.append((422, b'{"detail": [{"loc": ["query", "phone"], "input": "+33612000001"}]}'))
    with pytest.raises(RemoteCrmRejected) as refused:
        await sender.lookup("+33612000001", deadline_seconds=0.3)
    daemon_lines = [record.getMessage() for record in caplog.records if record.name.startswith("agi_daemon")]
    for text in (str(refused.value), *daemon_lines):  # (the in-test receiver's access log is its own)
        assert "612000001" not in text
    assert "HTTP 422" in str(refused.value) and '"input": "…0001"' in str(refused.value)


async def test_lookup_answered_by_a_page_not_in_utf8_is_unavailable(receiver, sender):
    receiver.lookup_answers.append((502, PROXY_PAGE))
    with pytest.raises(RemoteCrmUnavailable, match="HTTP 502"):
        await sender.lookup("+33612000001", deadline_seconds=0.3)
    receiver.lookup_answers.append((200, PROXY_PAGE))
    with pytest.raises(RemoteCrmRejected, match="malformed lookup answer"):
        await sender.lookup("+33612000001", deadline_seconds=0.3)


async def test_control_characters_of_the_receivers_answer_never_reach_an_error_or_a_log(receiver, sender, caplog):
    caplog.set_level(logging.DEBUG)
    receiver.answers.append((422, {}, b"phone\x00 refused\x1b[31m by\r\x07 rule\x7f 7\tsee\ndocs"))
    with pytest.raises(RemoteCrmRejected) as raised:
        await sender.send(_started("L6"))
    assert str(raised.value).endswith("HTTP 422 phone refused[31m by rule 7 see docs")
    for text in (caplog.text, str(raised.value)):
        assert "\x00" not in text and "\x1b" not in text and "\r" not in text and "\x07" not in text


async def test_refused_connection_is_unavailable_and_shows_no_secret(caplog):
    caplog.set_level(logging.DEBUG)
    from tests.asterisk.sandbox import closed_port

    port = closed_port()
    sender = WebhookSender(f"http://daemon:pa55w0rd@127.0.0.1:{port}/events?token=q53cr3t", SECRET,
                           lookup_url=f"http://daemon:pa55w0rd@127.0.0.1:{port}/who", timeout_seconds=0.5)
    await sender.open()
    try:
        with pytest.raises(RemoteCrmUnavailable) as raised:
            await sender.send(_started("L4"))
        with pytest.raises(RemoteCrmUnavailable) as looked_up:
            await sender.lookup("+33612000001", deadline_seconds=0.3)
    finally:
        await sender.close()
    for text in (str(raised.value), str(looked_up.value), caplog.text, repr(sender)):
        assert "q53cr3t" not in text and SECRET not in text and "pa55w0rd" not in text
    assert f"127.0.0.1:{port}" in str(raised.value) and f"127.0.0.1:{port}" in str(looked_up.value)


async def test_lookup_finds_the_known_client_and_its_responsible(sender):
    match = await sender.lookup("+33612000001", deadline_seconds=0.3)
    assert (str(match.entity), match.responsible, match.name) == ("contact:12", "alice", "Client")
    assert await sender.lookup("+33699999999", deadline_seconds=0.3) is None


async def test_slow_lookup_gives_up_at_the_deadline(receiver, sender):
    receiver.delay = 1.0
    started = time.monotonic()
    with pytest.raises(RemoteCrmUnavailable, match="no answer within 200 ms"):
        await sender.lookup("+33612000001", deadline_seconds=0.2)
    assert time.monotonic() - started < 0.9  # well before the receiver would have answered
