"""Several daemons drain one outbox (one per PBX, on one PostgreSQL database): each command is
delivered exactly once, whichever daemon takes it, in order within its lane; a command a dead
daemon had claimed for a remote CRM is taken over by another once the claim's lease runs out."""
from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import make_url

from agi_daemon.core.commands import CallReport, ChangeResponsible, CreateCallRecords, LogCall
from agi_daemon.crm import outbox_store
from agi_daemon.crm.embedded import EmbeddedCrm
from agi_daemon.crm.outbox import Delivery, Outbox
from tests.fakes.polling import eventually

from .test_outbox import AT, RemoteCrm, call_of, delivering, rows

pytestmark = pytest.mark.databases("postgresql")

CALLS = 300
NUMBERS_AT_ONCE = 30


def phone(n: int) -> str:
    return f"+336110{n:05d}"


async def leave_backlog(store: EmbeddedCrm, new_client, calls: int = CALLS) -> None:
    """What a daemon left pending: each call's records, then its call log, in the call's lane."""
    def leave(conn):
        for n in range(calls):
            outbox_store.add(conn, CreateCallRecords(new_client(phone(n), f"pbx1.{n}")), AT)
            outbox_store.add(conn, LogCall(call_of(f"pbx1.{n}", phone(n)), CallReport.HANGUP, phone(n)), AT)

    await store.transaction("test: a backlog", leave, write=True)


@contextlib.asynccontextmanager
async def second_store(crm: EmbeddedCrm):
    async with EmbeddedCrm(crm.url.render_as_string(hide_password=False)) as store:
        yield store


async def test_two_daemons_draining_one_backlog_apply_each_command_once_in_order(crm, new_client):
    await leave_backlog(crm, new_client)
    async with second_store(crm) as other:
        first, second = Outbox(crm, Delivery(crm)), Outbox(other, Delivery(other))
        async with delivering(first), delivering(second):  # both load the whole backlog and race for it
            await eventually(lambda: _all_delivered(crm), timeout=60)

    leads = await crm.list_records("leads")
    calls = await crm.list_records("calls")
    assert sorted(lead["created_by_call"] for lead in leads) == sorted(f"pbx1.{n}" for n in range(CALLS))
    assert sorted(call["linkedid"] for call in calls) == sorted(f"pbx1.{n}" for n in range(CALLS))
    lead_of = {lead["created_by_call"]: f"lead:{lead['id']}" for lead in leads}
    assert all(call["entity"] == lead_of[call["linkedid"]] for call in calls)  # records first, then the log on them


async def test_two_daemons_sending_one_backlog_to_a_remote_crm_send_each_command_once(crm, new_client):
    await leave_backlog(crm, new_client)
    remote = RemoteCrm()  # one remote CRM both daemons send to: it records what it received
    async with second_store(crm) as other:
        first, second = Outbox(crm, Delivery(crm, remote)), Outbox(other, Delivery(other, remote))
        async with delivering(first), delivering(second):
            await eventually(lambda: _all_delivered(crm), timeout=60)

    received = Counter(key for key, _ in remote.delivered)
    assert len(received) == 2 * CALLS and set(received.values()) == {1}
    order = [key for key, _ in remote.delivered]
    assert all(order.index(f"pbx1.{n}/records") < order.index(f"pbx1.{n}/call/hangup") for n in range(CALLS))


async def test_command_claimed_by_a_daemon_that_died_is_sent_by_another_once_the_lease_runs_out(crm, new_client):
    await leave_backlog(crm, new_client, calls=1)
    [row_id, _] = await crm.transaction("test: ids", lambda conn: [w.id for w in outbox_store.waiting(conn)], write=False)
    claimed_at = datetime.now(UTC)
    dead = await crm.transaction(  # the dead daemon claimed the row, then was killed before sending it
        "test: a claim", lambda conn: outbox_store.take(conn, row_id, claimed_at, claim=("pbx1:1", timedelta(seconds=2))),
        write=True)
    assert dead is not None
    remote = RemoteCrm()  # one remote CRM both daemons send to: it records what it received
    async with second_store(crm) as other, delivering(Outbox(other, Delivery(other, remote))):
        await eventually(lambda: _all_delivered(crm), timeout=20)
        taken_after = datetime.now(UTC) - claimed_at

    assert [key for key, _ in remote.delivered] == ["pbx1.0/records", "pbx1.0/call/hangup"]
    assert taken_after >= timedelta(seconds=2)  # not before the lease ran out


async def test_claimed_command_is_not_taken_by_another_daemon_while_its_lease_runs(crm, new_client):
    await leave_backlog(crm, new_client, calls=1)
    [row_id, next_id] = await crm.transaction("test: ids", lambda conn: [w.id for w in outbox_store.waiting(conn)],
                                              write=False)
    now = datetime.now(UTC)
    claim = ("pbx1:1", timedelta(minutes=2))
    assert await crm.transaction("test: claim", lambda conn: outbox_store.take(conn, row_id, now, claim=claim),
                                 write=True) is not None
    async with second_store(crm) as other:
        again = await other.transaction("test: take", lambda conn: outbox_store.take(conn, row_id, now), write=True)
        behind = await other.transaction("test: take", lambda conn: outbox_store.take(conn, next_id, now), write=True)
    assert (again, behind) == (None, None)  # claimed; and the call's log waits behind its records
    assert {status for status, _, _ in (await rows(crm)).values()} == {"pending"}


async def test_a_daemon_restarting_frees_only_its_own_hosts_claims_not_a_host_named_alike(crm, new_client):
    """At start a daemon frees the claims of its host's daemons that no longer run; the host's
    name is matched as written: "pbx_1" is not "pbx-1" (nor "pbx%1")."""
    await leave_backlog(crm, new_client, calls=3)
    ids = await crm.transaction("test: ids", lambda conn: [w.id for w in outbox_store.waiting(conn)][::2], write=False)
    now = datetime.now(UTC)
    for row_id, owner in zip(ids, ("pbx_1:10", "pbx-1:11", "pbxA1:12"), strict=True):
        assert await crm.transaction("test: claim", lambda conn, row_id=row_id, owner=owner: outbox_store.take(
            conn, row_id, now, claim=(owner, timedelta(minutes=2))), write=True) is not None

    found = {host: await crm.transaction("test: claimants", lambda conn, host=host: outbox_store.claimants(conn, host),
                                         write=False) for host in ("pbx_1", "pbx-1", "pbx%1")}

    assert found == {"pbx_1": ["pbx_1:10"], "pbx-1": ["pbx-1:11"], "pbx%1": []}


async def _all_delivered(store: EmbeddedCrm) -> bool:
    statuses = {status for status, _, _ in (await rows(store)).values()}
    return statuses == {"delivered"}


async def test_same_linkedid_on_two_pbxs_is_two_calls_and_a_transfer_on_one_never_reassigns_the_others_lead(
    crm, new_client
):
    """Two Asterisks number calls alike. PBX 1's call creates a lead for a new client; PBX 2's
    call with the same linkedid is from that (now known) client and is transferred to bob: R10
    concerns the records created by *that* call, and PBX 2's call created none."""
    linkedid = "1764640000.1"
    async with second_store(crm) as other:
        pbx1, pbx2 = Outbox(crm, Delivery(crm), pbx="pbx1"), Outbox(other, Delivery(other), pbx="pbx2")
        async with delivering(pbx1), delivering(pbx2):
            await pbx1.submit(CreateCallRecords(new_client(phone(1), linkedid)))
            await pbx1.submit(LogCall(call_of(linkedid, phone(1)), CallReport.HANGUP, phone(1)))
            await pbx2.submit(ChangeResponsible(linkedid, phone(1), "bob", 1))
            await pbx2.submit(LogCall(call_of(linkedid, phone(1)), CallReport.HANGUP, phone(1)))
            await eventually(lambda: _all_delivered(crm), timeout=10)
            ledger1, ledger2 = await pbx1.ledger(linkedid), await pbx2.ledger(linkedid)

    [lead] = await crm.list_records("leads")
    assert (lead["responsible"], lead["created_by_call"], lead["created_by_pbx"]) == ("alice", linkedid, "pbx1")
    calls = await crm.list_records("calls")
    assert sorted((call["pbx"], call["linkedid"], call["entity"]) for call in calls) == [
        ("pbx1", linkedid, f"lead:{lead['id']}"), ("pbx2", linkedid, f"lead:{lead['id']}")]
    assert ledger1.entity is not None and ledger2.created is None  # each PBX's ledger is its own call's


@pytest.mark.parametrize("server_default", ["read committed", "repeatable read"])
async def test_a_new_number_calling_two_pbxs_at_the_same_moment_gets_one_lead(crm_database_url, new_client,
                                                                              server_default):
    """A switchboard rings both sites at once: both daemons create the records of a number no
    record has, each in its own transaction. One creates the lead; the other's call joins it.
    Also when the database's default isolation is REPEATABLE READ (a DBA's choice): the
    daemon's transactions stay READ COMMITTED, so the look after the number's lock sees the
    other daemon's lead."""
    url = make_url(crm_database_url)
    with psycopg.connect(host=url.host, port=url.port, user=url.username, dbname=url.database,
                         autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {url.database} SET default_transaction_isolation = '{server_default}'")
    numbers = [phone(100 + n) for n in range(NUMBERS_AT_ONCE)]
    async with EmbeddedCrm(crm_database_url) as crm, EmbeddedCrm(crm_database_url) as other:
        pbx1, pbx2 = Outbox(crm, Delivery(crm), pbx="pbx1"), Outbox(other, Delivery(other), pbx="pbx2")
        async with delivering(pbx1), delivering(pbx2):
            for n, number in enumerate(numbers):
                await asyncio.gather(pbx1.submit(CreateCallRecords(new_client(number, f"1764650000.{n}"))),
                                     pbx2.submit(CreateCallRecords(new_client(number, f"1764650000.{n}"))))
        leads = await crm.list_records("leads")
    assert sorted(phone for lead in leads for phone in lead["phones"]) == sorted(numbers)


async def test_without_a_pbx_id_linkedids_are_stored_as_asterisk_gives_them(crm, new_client):
    async with delivering(Outbox(crm, Delivery(crm))) as outbox:
        await outbox.submit(CreateCallRecords(new_client(phone(2), "1764640000.2")))
    [lead] = await crm.list_records("leads")
    assert (lead["created_by_call"], "created_by_pbx" in lead) == ("1764640000.2", False)
    assert list(await rows(crm)) == ["1764640000.2/records"]
