"""The embedded CRM on a PostgreSQL server shared by several daemons: migrations run once, the
creation race between daemons, a server restart."""
from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import make_url

from agi_daemon.core.model import CreatedRecords, EntityRef, EntityType
from agi_daemon.core.ports import CrmUnavailable
from agi_daemon.crm.embedded import EmbeddedCrm
from tests.postgresql_server import PostgresServer

KNOWN = "+33612000001"


def connect(url: str) -> psycopg.Connection:
    parsed = make_url(url)
    return psycopg.connect(host=parsed.host, port=parsed.port, user=parsed.username, dbname=parsed.database)


async def test_daemons_starting_together_on_an_empty_database_migrate_it_once(postgresql: PostgresServer) -> None:
    url = postgresql.create_database(migrated=False)
    first, second = EmbeddedCrm(url), EmbeddedCrm(url)

    await asyncio.gather(first.open(), second.open())
    try:
        await first.add_record("contact", "Jean", KNOWN, None)
        match = await second.find_by_phone(KNOWN)
    finally:
        await asyncio.gather(first.close(), second.close())

    assert match is not None and match.name == "Jean"
    with connect(url) as db:
        assert len(db.execute("SELECT version_num FROM alembic_version").fetchall()) == 1


async def test_records_another_daemon_creates_for_the_same_call_meanwhile_are_returned_not_doubled(
    postgresql: PostgresServer, new_client
) -> None:
    """The other daemon's insert of the same call's lead is in flight (not committed) when this
    one looks: its insert waits on the unique index, fails when the other commits, and the
    savepoint lets it read the other's records back in the same transaction."""
    url = postgresql.create_database()
    async with EmbeddedCrm(url) as crm:
        other = connect(url)
        try:
            (other_lead,) = other.execute(
                "INSERT INTO leads (name, status, source, responsible, created_by_call, created_by_call_phone, created_at)"
                " VALUES ('Call from the other PBX', 'NEW', 'CALL', 'alice', %s, %s, %s) RETURNING id",
                ("17000.1", KNOWN, datetime.now(UTC)),
            ).fetchone()
            creating = asyncio.create_task(crm.create_records(new_client(KNOWN, "17000.1")))
            await asyncio.sleep(0.3)
            assert not creating.done()  # waiting on the other daemon's uncommitted row
            other.commit()
            created = await asyncio.wait_for(creating, 5)
        finally:
            other.close()

        assert created == CreatedRecords(lead=EntityRef(EntityType.LEAD, other_lead))
        assert [lead["id"] for lead in await crm.list_records("leads")] == [other_lead]
        # the transaction went on after the savepoint: later writes work
        assert (await crm.create_records(new_client(KNOWN, "17000.2"))).lead != created.lead


async def test_two_daemons_creating_the_records_of_one_call_at_once_create_them_once(
    postgresql: PostgresServer, new_client
) -> None:
    url = postgresql.create_database()
    async with EmbeddedCrm(url) as first, EmbeddedCrm(url) as second:
        results = await asyncio.gather(*(
            crm.create_records(new_client(f"+336120001{n:02d}", f"17000.{n}"))
            for n in range(20) for crm in (first, second)
        ))
        leads = await first.list_records("leads")

    assert len(leads) == 20
    assert all(results[2 * n] == results[2 * n + 1] for n in range(20))


async def test_server_restart_fails_lookups_fast_then_the_crm_answers_again_without_reopening(
    postgresql: PostgresServer,
) -> None:
    url = postgresql.create_database()
    async with EmbeddedCrm(url) as crm:
        await crm.add_record("contact", "Known", KNOWN, "bob")
        assert await crm.find_by_phone(KNOWN) is not None  # the pool holds live connections

        postgresql.stop()
        try:
            started = time.monotonic()
            with pytest.raises(CrmUnavailable):
                await crm.find_by_phone(KNOWN)
            with pytest.raises(CrmUnavailable):
                await crm.add_record("contact", "Lost?", "+33612000002", None)
            failed_in = time.monotonic() - started
        finally:
            postgresql.start()

        await asyncio.gather(*(crm.find_by_phone(KNOWN) for _ in range(10)))  # the pool is full again
        postgresql.stop()
        postgresql.start()  # a restart no operation saw: every pooled connection is stale
        matches = await asyncio.gather(*(crm.find_by_phone(KNOWN) for _ in range(10)))
        added = await crm.add_record("contact", "After", "+33612000003", None)

    assert failed_in < 1.0
    assert {m.name for m in matches if m is not None} == {"Known"} and None not in matches
    assert added["name"] == "After"


async def test_write_waiting_for_another_daemons_lock_is_unavailable_after_the_busy_timeout_and_lookups_go_on(
    postgresql: PostgresServer, new_client
) -> None:
    url = postgresql.create_database()
    async with EmbeddedCrm(url, busy_timeout_ms=300) as crm:
        await crm.add_record("contact", "Known", KNOWN, "bob")
        other = connect(url)
        try:
            other.execute("LOCK TABLE leads IN EXCLUSIVE MODE")  # readers pass, writers wait
            started = time.monotonic()
            with pytest.raises(CrmUnavailable, match="lock timeout"):
                await crm.create_records(new_client("+33612000002", "17000.1"))
            waited = time.monotonic() - started
            match = await asyncio.wait_for(crm.find_by_phone(KNOWN), 1)
        finally:
            other.rollback()
            other.close()
        created = await crm.create_records(new_client("+33612000002", "17000.1"))  # the retry, later
        leads = await crm.list_records("leads")

    assert 0.25 < waited < 2.0
    assert match is not None and match.name == "Known"
    assert [lead["id"] for lead in leads] == [created.lead.id]


async def test_the_server_drops_a_daemon_gone_silent_in_a_transaction_within_a_minute(
    postgresql: PostgresServer,
) -> None:
    """A daemon's host loses power mid-transaction: no FIN reaches the server, which would keep
    its session and its number locks for hours (its own TCP keepalive), holding every other
    daemon's writes of those numbers. The daemon's sessions ask the server to drop them after
    a minute idle in a transaction, and to probe the client within seconds."""
    from sqlalchemy import text

    url = postgresql.create_database()
    async with EmbeddedCrm(url) as crm:
        shown = await crm.transaction("test: the session's settings", lambda conn: [
            conn.execute(text(f"SHOW {name}")).scalar()
            for name in ("idle_in_transaction_session_timeout", "tcp_keepalives_idle", "transaction_isolation")],
            write=True)
    assert shown == ["1min", "5", "read committed"]


def test_a_daemon_gone_silent_mid_migration_is_dropped_too(postgresql: PostgresServer) -> None:
    """The migration's session holds the lock every other daemon's start waits on: it has the
    same idle timeout and keepalives (and waits for another daemon's migration as long as it
    takes: no lock timeout)."""
    from sqlalchemy import Engine, event

    from agi_daemon.crm.database import database_url
    from agi_daemon.crm.migrations import upgrade_to_head

    seen: list[tuple[str, ...]] = []

    def settings(dbapi_connection, _record) -> None:
        with dbapi_connection.cursor() as cursor:
            seen.append(tuple(cursor.execute(f"SHOW {name}").fetchone()[0] for name in
                              ("idle_in_transaction_session_timeout", "tcp_keepalives_idle", "lock_timeout")))

    event.listen(Engine, "connect", settings)
    try:
        upgrade_to_head(database_url(postgresql.create_database(migrated=False)))
    finally:
        event.remove(Engine, "connect", settings)
    assert seen and set(seen) == {("1min", "5", "0")}


async def test_a_hangup_report_written_as_another_daemon_logs_trackings_report_never_replaces_it(
    postgresql: PostgresServer,
) -> None:
    """A fail-over pair of one PBX, both following the calls: the other daemon is writing
    tracking's report of a call (not committed yet) when this one writes the dialplan's hangup
    report of it. The hangup report waits, then yields: tracking's (who answered, the transfer)
    stays. It used to look first, see no row, and replace tracking's once the other committed."""
    from agi_daemon.core.model import CallRecord, Direction, Disposition

    url = postgresql.create_database()
    async with EmbeddedCrm(url) as crm:
        other = connect(url)
        try:
            other.execute(
                "INSERT INTO calls (linkedid, direction, line, number, disposition, answered_by, employees, started_at,"
                " answered_at, ended_at, ring_seconds, talk_seconds, transfers, partial) VALUES ('1764650000.7',"
                " 'incoming', '+33184880000', %s, 'answered', 'alice', '[\"alice\", \"bob\"]', now(), now(), now(),"
                " 3, 60, '[{\"from\": \"alice\", \"to\": \"bob\", \"kind\": \"blind\"}]', false)", (KNOWN,))
            at = datetime.now(UTC)
            hangup = CallRecord("1764650000.7", Direction.INCOMING, "+33184880000", KNOWN, Disposition.ANSWERED,
                                at, at, at, "bob", ("alice", "bob"), 30, 33)
            logging = asyncio.create_task(crm.log_call(hangup, keep_existing=True))
            await asyncio.sleep(0.3)
            assert not logging.done()  # waiting on the other daemon's uncommitted row
            other.commit()
            await asyncio.wait_for(logging, 5)
        finally:
            other.close()
        [logged] = await crm.list_records("calls")
    assert (logged["answered_by"], logged["transfers"]) == ("alice", [{"from": "alice", "to": "bob", "kind": "blind"}])


@pytest.mark.parametrize("writer", ["crm import", "crm add"])
async def test_a_number_imported_or_added_while_a_call_creates_its_records_is_not_doubled(
    postgresql: PostgresServer, new_client, writer: str
) -> None:
    """A new number calls while the admin imports (or adds) it: the daemon's transaction has
    created the call's lead, not committed yet. The import waits for it, then skips the
    number; `crm add` refuses it. Without the wait both see no record: a lead and a contact."""
    from sqlalchemy import create_engine

    from agi_daemon.crm import embedded
    from agi_daemon.crm.csv_import import ContactRow
    from agi_daemon.crm.database import database_url
    from tests.fakes.polling import eventually

    url = postgresql.create_database()
    engine = create_engine(database_url(url))
    try:
        async with EmbeddedCrm(url) as crm:
            with engine.connect() as call:  # a daemon delivering the new caller's lead
                embedded.lock_number(call, KNOWN)
                embedded.insert_records(call, new_client(KNOWN, "17000.1"))
                if writer == "crm import":
                    writing = asyncio.create_task(crm.import_contacts([ContactRow(2, "Jean Import", KNOWN)]))
                else:
                    writing = asyncio.create_task(crm.add_record("contact", "Jean Added", KNOWN, None, if_new=True))
                with connect(url) as watcher:
                    waits = await eventually(lambda: watcher.execute(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").fetchone()[0])
                assert waits and not writing.done(), f"{writer} did not wait for the call's transaction"
                call.commit()
            outcome = await asyncio.wait_for(asyncio.gather(writing, return_exceptions=True), 5)
            leads, contacts = await crm.list_records("leads"), await crm.list_records("contacts")
    finally:
        engine.dispose()
    assert len(leads) == 1 and contacts == []
    if writer == "crm import":
        [result] = outcome
        assert (result.created, result.skipped) == (0, 1) and "is already on lead:" in result.notes[0].message
    else:
        [refused] = outcome
        assert isinstance(refused, embedded.NumberKnown) and refused.entity == f"lead:{leads[0]['id']}"


async def test_crm_import_on_postgresql_holds_the_daemons_creations_off_a_fifth_as_long(
    postgresql: PostgresServer, tmp_path
) -> None:
    """Each batch of `crm import` holds the daemons' creations of records off until it commits:
    on PostgreSQL its batches are of 1,000 rows (about 70 ms on a local server), not SQLite's 5,000."""
    from agi_daemon.crm.csv_import import BATCH_SIZE

    async with EmbeddedCrm(postgresql.create_database()) as on_postgresql, \
            EmbeddedCrm(f"sqlite:///{tmp_path / 'crm.sqlite3'}") as on_sqlite:
        assert (on_postgresql.import_batch_size, on_sqlite.import_batch_size) == (1000, BATCH_SIZE)
