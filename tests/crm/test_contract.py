"""The CRM contract, one suite for the three adapters: embedded, Bitrix24 and signed webhook.

Each case runs once per adapter, through what the daemon really uses: the outbox (crm.outbox
`Outbox` and `Delivery`) on the daemon's own SQLite store, the adapter's lookup, and for the
remote adapters an in-test HTTP CRM (the Bitrix24 portal of tests/crm/bitrix24_portal.py, which
checks every request against the REST documentation and enforces its 2/s, burst 50 bucket; the
webhook CRM of tests/crm/webhook_crm.py, which verifies every signature). What is asserted is
what the CRM holds afterwards (tests/crm/crm_holds.py), the same shapes whatever the adapter.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agi_daemon.core.commands import (
    CallLedger, CallReport, ChangeResponsible, CreateCallRecords, CrmCommand, LedgerUpdate, LogCall, RecordOffer,
)
from agi_daemon.core.model import CallRecord, CreateWith, CrmMode, Direction, Disposition, Offer
from agi_daemon.core.ports import CrmLookup, CrmRejected, CrmUnavailable
from agi_daemon.core.rules import CallEntry
from agi_daemon.crm import embedded_delivery, outbox_store
from agi_daemon.crm.bitrix24.adapter import Bitrix24Crm
from agi_daemon.crm.bitrix24.auth import WebhookAuth
from agi_daemon.crm.bitrix24.bucket import LeakyBucket
from agi_daemon.crm.bitrix24.cache import LookupCache
from agi_daemon.crm.bitrix24.client import Bitrix24Client
from agi_daemon.crm.bitrix24.operations import EmployeeDirectory, EmployeeLink
from agi_daemon.crm.embedded import EmbeddedCrm
from agi_daemon.crm.outbox import Delivery, Outbox
from agi_daemon.crm.webhook.adapter import WebhookCrm
from agi_daemon.crm.webhook.sender import WebhookSender
from agi_daemon.services.call_log import CallLogService
from agi_daemon.services.pending import PendingWork
from agi_daemon.services.routed_calls import RoutedCalls
from agi_daemon.services.routing import RoutingService
from tests.crm.bitrix24_portal import Bitrix24Portal
from tests.crm.test_outbox import delivering
from tests.crm.crm_holds import PIPELINE_IDS, CrmHolds, EmbeddedHolds, PortalHolds, WebhookHolds, logged
from tests.crm.webhook_crm import WebhookCrmServer
from tests.fakes.clock import FixedClock
from tests.fakes.polling import eventually
from tests.fakes.rules import ALICE_MOBILE, BLOCKED, PARIS, make_rules

NEW = "+33611000001"  # a caller no CRM knows
KNOWN = "+33622000002"  # seeded as a contact whose responsible is alice
AT = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
ADAPTERS = ("embedded", "bitrix24", "webhook")


@dataclass
class Contracted:
    """One adapter as the daemon wires it, and what its CRM holds."""

    name: str
    holds: CrmHolds
    lookup: CrmLookup
    outbox: Outbox
    store: EmbeddedCrm
    # the adapter's delivery of one command, called directly: the outbox calls it again after
    # a crash between the delivery and its "delivered" mark, with the same ledger
    deliver: Callable[[CrmCommand, CallLedger], Awaitable[LedgerUpdate]]
    go_down: Callable[[], Awaitable[None]]  # the CRM cannot be reached until come_back
    come_back: Callable[[], Awaitable[None]]
    refused: Callable[[CrmCommand], CrmCommand]  # the command, made one the CRM refuses
    requests: Callable[[], int] | None  # requests sent to a remote CRM so far (None: no wire)


@pytest.fixture(params=ADAPTERS)
async def contract(request, tmp_path: Path, portal: Bitrix24Portal, webhook_crm: WebhookCrmServer):
    # a short busy timeout: "the embedded CRM is down" is its database locked by another writer
    async with EmbeddedCrm(f"sqlite:///{tmp_path}/crm.sqlite3", busy_timeout_ms=100) as store:
        if request.param == "embedded":
            yield _embedded(store, tmp_path / "crm.sqlite3")
        elif request.param == "bitrix24":
            async with _opened(bitrix24_adapter(portal)) as adapter:
                yield _remote("bitrix24", store, adapter, PortalHolds(portal), portal, lambda: portal.requests,
                              lambda: portal.fail_next(1, 400, "ERROR_CORE", "Phone number is not valid"))
        else:
            async with _opened(webhook_adapter(webhook_crm)) as adapter:
                yield _remote("webhook", store, adapter, WebhookHolds(webhook_crm), webhook_crm,
                              lambda: webhook_crm.requests, lambda: webhook_crm.answers.append(422))


def bitrix24_adapter(portal: Bitrix24Portal, mode: CrmMode = CrmMode.CLASSIC) -> Bitrix24Crm:
    """As agi_daemon.remote_crm builds it for the test PBX: alice is portal user 11 (crm_user),
    bob is found by his internal phone 102."""
    client = Bitrix24Client(WebhookAuth(portal.webhook_url), LeakyBucket(2, 50), timeout_seconds=0.5)
    directory = EmployeeDirectory([EmployeeLink("alice", 11, "101"), EmployeeLink("bob", None, "102")])
    return Bitrix24Crm(client, directory, ["alice", "bob"], deadline_seconds=0.3, pipelines=PIPELINE_IDS, mode=mode,
                       cache=LookupCache(ttl_seconds=10.0))


def webhook_adapter(server: WebhookCrmServer, *, with_lookup: bool = True) -> WebhookCrm:
    sender = WebhookSender(server.url, server.secret, lookup_url=server.lookup_url if with_lookup else None,
                           timeout_seconds=0.5)
    return WebhookCrm(sender, deadline_seconds=0.3, mode=CrmMode.CLASSIC, pipeline="general")


@contextlib.asynccontextmanager
async def _opened(adapter):
    await adapter.open()
    try:
        yield adapter
    finally:
        await adapter.close()


def _embedded(store: EmbeddedCrm, file: Path) -> Contracted:
    locks: list[sqlite3.Connection] = []

    async def go_down() -> None:
        blocker = sqlite3.connect(file, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        locks.append(blocker)

    async def come_back() -> None:
        for blocker in locks:
            blocker.execute("ROLLBACK")
            blocker.close()
        locks.clear()

    def deliver(command: CrmCommand, ledger: CallLedger) -> Awaitable[LedgerUpdate]:
        return store.transaction("test: deliver", lambda conn: embedded_delivery.apply(conn, command, ledger),
                                 write=True)

    def refused(command: CrmCommand) -> CrmCommand:
        assert isinstance(command, CreateCallRecords)
        return CreateCallRecords(replace(command.plan, name=None))  # a record without a name: the database refuses it

    return Contracted("embedded", EmbeddedHolds(store), store, Outbox(store, Delivery(store), first_delay=0.01), store,
                      deliver, go_down, come_back, refused, None)


def _remote(name, store, adapter, holds, server, requests, refuse_next) -> Contracted:
    def refused(command: CrmCommand) -> CrmCommand:
        refuse_next()
        return command

    down = []

    async def go_down() -> None:
        await server.refuse_connections()
        down.append(True)

    async def come_back() -> None:
        if down:
            await server.accept_connections()
            down.clear()

    return Contracted(name, holds, adapter, Outbox(store, Delivery(store, adapter), first_delay=0.01), store,
                      adapter.deliver, go_down, come_back, refused, requests)


def plan(new_client, linkedid: str, **changes):
    return new_client(NEW, linkedid, **changes)


def ended(linkedid: str, phone: str, *, answered_by: str | None = "bob") -> CallRecord:
    answered = answered_by is not None
    return CallRecord(linkedid, Direction.INCOMING, PARIS, phone,
                      Disposition.ANSWERED if answered else Disposition.MISSED, AT, AT + timedelta(seconds=40),
                      answered_at=AT + timedelta(seconds=15) if answered else None, answered_by=answered_by,
                      employees=("alice", "bob"), ring_seconds=15.0, talk_seconds=25.0 if answered else 0.0)


async def outbox_rows(store: EmbeddedCrm) -> dict[str, tuple[str, int]]:
    """key -> (status, attempts)"""
    def read(conn):
        table = outbox_store.outbox
        return {key: (status, attempts) for key, status, attempts in conn.execute(
            table.select().with_only_columns(table.c.key, table.c.status, table.c.attempts))}

    return await store.transaction("test: read the outbox", read, write=False)


# ---- the call path's lookup (R6) --------------------------------------------------------

async def test_unknown_number_is_no_client(contract):
    await contract.holds.add_record("contact", "Someone else", KNOWN, "bob")
    assert await contract.lookup.find_by_phone(NEW) is None


async def test_known_client_is_found_with_the_employee_responsible_for_it(contract):
    seeded = await contract.holds.add_record("contact", "Client SA", KNOWN, "bob")
    match = await contract.lookup.find_by_phone(KNOWN)
    assert match is not None
    assert (str(match.entity), match.responsible) == (f"contact:{seeded['id']}", "bob")


async def test_webhook_without_a_lookup_url_knows_no_client_by_design(webhook_crm):
    """The lookup URL is optional: without it the webhook CRM cannot be asked, every caller is
    new to the daemon (R6 does not apply); the receiver still gets every event."""
    WebhookHolds(webhook_crm).server.add_record("contact", "Client SA", KNOWN, "bob")
    async with _opened(webhook_adapter(webhook_crm, with_lookup=False)) as adapter:
        assert await adapter.find_by_phone(KNOWN) is None
    assert webhook_crm.requests == 0


# ---- records a call creates (R1, R5, R9, R11) -------------------------------------------

async def test_classic_mode_call_creates_one_lead_with_source_and_responsible(contract, new_client):
    async with delivering(contract.outbox):
        await contract.outbox.submit(CreateCallRecords(plan(new_client, "C1")))
        [lead] = await eventually(lambda: contract.holds.list_records("leads"))
    assert (lead["phones"], lead["source"], lead["responsible"]) == ([NEW], "CALL", "alice")
    assert (lead["status"], lead["created_by_call"]) == ("NEW", "C1")
    assert await contract.holds.list_records("deals") == []
    ledger = await contract.outbox.ledger("C1")
    assert ledger.created is not None and str(ledger.created.primary) == f"lead:{lead['id']}"


@pytest.mark.parametrize("create_with", [CreateWith.CONTACT, CreateWith.COMPANY])
async def test_simple_mode_call_creates_a_deal_in_the_pipeline_with_its_contact_or_company(
        contract, new_client, create_with):
    partner = create_with.value
    async with delivering(contract.outbox):
        await contract.outbox.submit(CreateCallRecords(plan(new_client, "C2", mode=CrmMode.SIMPLE,
                                                            create_with=create_with, pipeline="b2b")))
        [deal] = await eventually(lambda: contract.holds.list_records("deals"))
    [party] = await contract.holds.list_records("contacts" if partner == "contact" else "companies")
    other = await contract.holds.list_records("companies" if partner == "contact" else "contacts")
    assert (deal["pipeline"], deal["source"], deal["responsible"], deal["created_by_call"]) == (
        "b2b", "CALL", "alice", "C2")
    assert deal[partner] == f"{partner}:{party['id']}"
    assert (party["phones"], party["responsible"], party["created_by_call"]) == ([NEW], "alice", "C2")
    assert other == []
    # no lead to work on: converted at once (embedded, webhook), or none at all (Bitrix24)
    assert [lead for lead in await contract.holds.list_records("leads") if lead["status"] != "CONVERTED"] == []


async def test_records_delivered_again_after_a_crash_before_the_delivered_mark_exist_once(contract, new_client):
    """The daemon died between the delivery and its "delivered" mark: the outbox delivers the
    same command again, with the same ledger (it learned nothing)."""
    command = CreateCallRecords(plan(new_client, "C3"))
    first = await contract.deliver(command, CallLedger("C3"))
    again = await contract.deliver(command, CallLedger("C3"))
    [lead] = await contract.holds.list_records("leads")
    assert lead["created_by_call"] == "C3"
    assert first.created is not None and again.created is not None
    assert str(first.created.primary) == str(again.created.primary) == f"lead:{lead['id']}"


async def test_offer_creates_nothing_and_the_crm_holds_the_offer(contract):
    """R3 `offer`: the call window (embedded, webhook receiver) or Bitrix24's own card
    (registered with CRM_CREATE=0) offers to create the lead or contact."""
    async with delivering(contract.outbox):
        await contract.outbox.submit(RecordOffer(Offer("C12", Direction.INCOMING, PARIS, NEW, ("alice", "bob"), AT)))
        offers = await eventually(lambda: contract.holds.list_records("offers"))
    assert [(offer["linkedid"], offer["phone"], offer["line"]) for offer in offers] == [("C12", NEW, PARIS)]
    for kind in ("leads", "contacts", "companies", "deals"):
        assert await contract.holds.list_records(kind) == []


# ---- the call log (R12) -----------------------------------------------------------------

async def test_call_is_logged_once_on_the_records_it_created(contract, new_client):
    async with delivering(contract.outbox):
        await contract.outbox.submit(CreateCallRecords(plan(new_client, "C4")))
        await contract.outbox.submit(LogCall(ended("C4", NEW), CallReport.HANGUP, NEW))
        await contract.outbox.submit(LogCall(ended("C4", NEW), CallReport.TRACKED, NEW))
        [call] = await eventually(lambda: logged(contract.holds, "C4"))
        delivered = await eventually(lambda: _delivered(contract.store, 3))
    assert delivered == {"C4/records": "delivered", "C4/call/hangup": "delivered", "C4/call/tracked": "delivered"}
    [lead] = await contract.holds.list_records("leads")
    assert [c["linkedid"] for c in await contract.holds.list_records("calls")] == ["C4"]
    assert (call["entity"], call["direction"], call["line"], call["number"]) == (
        f"lead:{lead['id']}", "incoming", PARIS, NEW)
    assert (call["disposition"], call["answered_by"], call["talk_seconds"]) == ("answered", "bob", 25.0)


async def test_call_of_a_known_client_is_logged_on_the_clients_record(contract):
    seeded = await contract.holds.add_record("contact", "Client SA", KNOWN, "alice")
    async with delivering(contract.outbox):
        await contract.outbox.submit(LogCall(ended("C5", KNOWN, answered_by=None), CallReport.TRACKED, KNOWN))
        [call] = await eventually(lambda: logged(contract.holds, "C5"))
    assert (call["entity"], call["disposition"], call["talk_seconds"]) == (f"contact:{seeded['id']}", "missed", 0.0)
    assert await contract.holds.list_records("leads") == []


# ---- R10 --------------------------------------------------------------------------------

async def test_responsible_change_moves_the_records_the_call_created_and_never_a_known_clients(contract, new_client):
    """The known client's change is delivered (not a dead letter, not left pending) and changes
    nothing: its call created no records, and the client's own records are never moved."""
    seeded = await contract.holds.add_record("contact", "Client SA", KNOWN, "alice")
    async with delivering(contract.outbox):
        await contract.outbox.submit(CreateCallRecords(plan(new_client, "C6")))
        await contract.outbox.submit(ChangeResponsible("C6", NEW, "bob", 1))
        await contract.outbox.submit(ChangeResponsible("C7", KNOWN, "bob", 1))  # a known client's call created nothing
        delivered = await eventually(lambda: _delivered(contract.store, 3))
    assert delivered == {"C6/records": "delivered", "C6/responsible/1/bob": "delivered",
                         "C7/responsible/1/bob": "delivered"}
    [lead] = await contract.holds.list_records("leads")
    assert (lead["responsible"], lead["created_by_call"]) == ("bob", "C6")
    assert await contract.holds.list_records("contacts") == [seeded]  # the known client's contact, as it was
    for kind in ("companies", "deals"):
        assert await contract.holds.list_records(kind) == []


# ---- failures ---------------------------------------------------------------------------

async def test_crm_down_is_unavailable_and_the_outbox_delivers_once_when_it_is_back(contract, new_client, caplog):
    caplog.set_level(logging.INFO, logger="agi_daemon.crm.outbox")
    command = CreateCallRecords(plan(new_client, "C8"))
    await contract.go_down()
    try:
        with pytest.raises(CrmUnavailable):
            await contract.deliver(command, CallLedger("C8"))
        async with delivering(contract.outbox):
            submitted = asyncio.create_task(contract.outbox.submit(command))
            # the outbox said it will try again (a remote delivery, or the embedded store's commit)
            assert await eventually(lambda: [r for r in caplog.records if "next try in" in r.getMessage()
                                             or "retrying" in r.getMessage()], timeout=5)
            await contract.come_back()
            await asyncio.wait_for(submitted, 5)
            [lead] = await eventually(lambda: contract.holds.list_records("leads"))
            assert await eventually(lambda: _delivered(contract.store, 1))
    finally:
        await contract.come_back()
    assert lead["created_by_call"] == "C8"
    assert len(await contract.holds.list_records("leads")) == 1


async def test_request_the_crm_refuses_is_rejected_and_becomes_a_dead_letter(contract, new_client):
    command = contract.refused(CreateCallRecords(plan(new_client, "C9")))
    with pytest.raises(CrmRejected):
        await contract.deliver(command, CallLedger("C9"))
    async with delivering(contract.outbox):
        await contract.outbox.submit(contract.refused(command))
        rows = await eventually(lambda: _dead(contract.store))
    assert rows == {"C9/records": ("dead", 1)}
    assert await contract.holds.list_records("leads") == []


@pytest.mark.parametrize("caller", [BLOCKED, ALICE_MOBILE], ids=["exception-list", "employee-phone"])
async def test_excluded_call_is_routed_and_leaves_nothing_in_the_crm(contract, caller):
    """R7, R8, through the real routing and call-log services: nothing to look up, nothing to
    record, and for a remote CRM not one request."""
    before = contract.requests() if contract.requests else None
    async with asyncio.TaskGroup() as tasks, delivering(contract.outbox):
        rules, clock, pending, routed = make_rules(), FixedClock(), PendingWork(tasks.create_task), RoutedCalls()
        routing = RoutingService(lambda: rules, contract.lookup, clock, pending, commands=contract.outbox,
                                 deadline=0.3, routed=routed)
        call_log = CallLogService(lambda: rules, contract.lookup, clock, pending, commands=contract.outbox,
                                  routed=routed, settle_timeout=5)
        decision = await routing.route(CallEntry(Direction.INCOMING, PARIS, caller), "C10")
        assert decision.status.value == "excluded"
        assert await call_log.tracked_call_ended(ended("C10", caller)) is None
    for kind in ("leads", "contacts", "companies", "deals", "calls"):
        assert await contract.holds.list_records(kind) == []
    assert await outbox_rows(contract.store) == {}
    if contract.requests is not None:  # the embedded CRM has no wire: its tables say it all
        assert contract.requests() == before


async def _delivered(store: EmbeddedCrm, count: int) -> dict[str, str] | None:
    """key -> status of every outbox row, once there are `count` and all are delivered; else
    None (so a wait for it that times out fails the assertion on it)."""
    rows = await outbox_rows(store)
    done = len(rows) >= count and all(status == "delivered" for status, _ in rows.values())
    return {key: status for key, (status, _) in rows.items()} if done else None


async def _dead(store: EmbeddedCrm) -> dict[str, tuple[str, int]] | None:
    rows = await outbox_rows(store)
    return rows if rows and all(status == "dead" for status, _ in rows.values()) else None

