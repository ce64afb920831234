"""The embedded CRM: leads, contacts, companies and deals kept in the daemon's own database.

The default CRM, and the daemon's own store whatever the adapter (the outbox and the call
ledger live in the same database). SQLite out of the box (`sqlite:///var/crm.sqlite3`),
PostgreSQL by changing the URL. It is the `CrmLookup` routing asks; the outbox's commands are
applied to its tables by `embedded_delivery` in the transactions of `transaction()`. Its own
write methods (create_records, log_call, ...) and the administration of the command line (add
a record, list records, import contacts) serve the web pages, the command line and tests.
"""
from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from collections.abc import AsyncIterable, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from dataclasses import dataclass
from functools import cache, partial
from typing import Any, Literal, Self, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Executable,
    Select,
    Table,
    bindparam,
    create_engine,
    exc,
    func,
    literal_column,
    select,
    text,
    union_all,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ClauseElement

from ..core.commands import CallReport
from ..core.model import (
    CallRecord,
    CreatedRecords,
    CreateWith,
    CrmMode,
    EntityRef,
    EntityType,
    Match,
    Offer,
    RecordPlan,
)
from ..core.phone import masked, numbers_masked
from ..core.ports import CrmRejected, CrmUnavailable, WouldWait
from . import csv_import, migrations
from .csv_import import ContactRow, ImportResult, RowError
from .database import (
    WRITE, LoopReader, database_url, optimize, pool_options, sqlite_file, trace_server, tune_sqlite,
)
from .group_commit import GroupCommit
from .new_record import CLIENT_TYPES, already_on
from .records_json import Json, list_json, records_json
from .tables import RECORD_TABLES, calls, companies, contacts, deals, leads, offers, phones

log = logging.getLogger(__name__)

LEAD_NEW = "NEW"
LEAD_CONVERTED = "CONVERTED"
DEAL_FIRST_STAGE = "NEW"
OFFER_OPEN = "open"

RecordKind = Literal["contact", "company", "lead"]
ListKind = Literal["leads", "contacts", "companies", "deals", "calls", "offers"]

# Who a number belongs to, in the order R6 looks: contact, then company, then a lead not yet
# converted (a converted lead's client is its contact or company).
_LOOKUP_ORDER = (EntityType.CONTACT, EntityType.COMPANY, EntityType.LEAD)

# The CRM's own worker threads (each with its database connection; crm.embedded.pool_size), and
# how long close() waits for the operations in flight beyond the busy timeout.
WORKERS = 4
_STALLED_S = 2.0  # an operation in flight this long means the database is stalled: say busy
_CLOSE_GRACE_S = 5.0

T = TypeVar("T")


POSTGRESQL_IMPORT_BATCH = 1000  # see EmbeddedCrm.import_batch_size


class NumberKnown(CrmRejected):
    """`crm add` of a number already on a record (`entity`, "contact:12")."""

    def __init__(self, entity: str) -> None:
        super().__init__(f"the number is already on {entity}")
        self.entity = entity


class EmbeddedCrm:
    """The CRM in the daemon's database. `await open()` before use, `await close()` after
    (or `async with EmbeddedCrm(url) as crm`).

    Each operation is one transaction of a sync SQLAlchemy engine, run whole in a worker
    thread of the CRM's own small pool, so the event loop never blocks nor waits behind other
    users of a shared pool. Writes go to one writer thread, where those waiting at the same
    moment share a transaction (group_commit). The call path's point reads run on the
    event loop's own connection, within a small time budget (see `_read_first`)."""

    def __init__(
        self,
        url: str,
        *,
        busy_timeout_ms: int = 5000,
        stalled_after: float = _STALLED_S,
        trace: Callable[[str], None] | None = None,
        pool_size: int = WORKERS,
    ) -> None:
        """`stalled_after`: seconds an operation may be in flight before the database counts as
        stalled and new operations fail at once with CrmUnavailable. `trace`, when given,
        receives every SQL statement the CRM runs, with its values (for debugging,
        and for the test that checks every query plan). `pool_size`: the worker threads that
        read, each with its connection (the writer thread has one more)."""
        self.url = database_url(url)
        self._pool_size = pool_size
        self._busy_timeout_ms = busy_timeout_ms
        self._stalled_after = stalled_after
        self._trace = trace
        self._reader: LoopReader | None = None  # the event loop's own, see _read_first
        self._executor: ThreadPoolExecutor | None = None
        self._write_executor: ThreadPoolExecutor | None = None
        self._engine: Engine | None = None
        self._writes: GroupCommit | None = None
        self._running: dict[asyncio.Future[Any], float] = {}  # in flight -> submitted at (loop time)
        self._open_lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self, *, migrate: bool = True) -> None:
        """Create the database if needed and bring its schema to the latest migration.
        Idempotent. The migrations run in a worker thread: the event loop never waits.

        `migrate=False` (the commands that only read): the database must exist and be at this
        version's latest revision already; it is neither created nor migrated, and one that is
        out of date raises `migrations.SchemaOutOfDate`. Either way a database migrated by a
        newer version raises `migrations.SchemaTooNew` (both are CrmErrors)."""
        async with self._open_lock:
            if self._engine is not None:
                return
            executor = ThreadPoolExecutor(self._pool_size, thread_name_prefix="crm")
            try:
                with _crm_errors("open the CRM database"):
                    database = sqlite_file(self.url)
                    if database is not None and not migrate and not database.exists():
                        raise CrmUnavailable(f"open the CRM database: no database at {database}")
                    if database is not None and migrate:
                        database.parent.mkdir(parents=True, exist_ok=True)
                    await asyncio.get_running_loop().run_in_executor(
                        executor, migrations.upgrade_to_head if migrate else migrations.check_at_head,
                        self.url, self._busy_timeout_ms
                    )
            except BaseException:
                executor.shutdown(wait=False)
                raise
            engine = create_engine(self.url, **pool_options(self.url, self._pool_size, self._busy_timeout_ms))
            tune_sqlite(engine, self._busy_timeout_ms, trace=self._trace)
            trace_server(engine, self._trace)
            database = sqlite_file(self.url)
            self._reader = None if database is None else LoopReader(database, trace=self._trace)
            self._executor, self._engine = executor, engine
            self._write_executor = ThreadPoolExecutor(1, thread_name_prefix="crm-write")
            self._writes = GroupCommit(engine.execution_options(**WRITE), self._write_executor, _crm_errors,
                                       keep_connection=database is not None)

    async def close(self) -> None:
        """Wait for the operations in flight (at most the busy timeout and a few seconds),
        then release the worker threads and the database connections. The CRM can be
        opened again; until then every operation is CrmUnavailable."""
        async with self._open_lock:
            executor, engine, reader = self._executor, self._engine, self._reader
            write_executor, writes = self._write_executor, self._writes
            self._executor = self._engine = self._writes = self._reader = self._write_executor = None
            if executor is None or engine is None or write_executor is None:
                return
            if reader is not None:
                reader.close()
            executor.shutdown(wait=False)  # what was submitted still runs, for a while (below)
            if writes is not None:  # after the writes queued: the writer's kept connection goes back
                closing = asyncio.wrap_future(write_executor.submit(writes.close))
                self._running[closing] = asyncio.get_running_loop().time()
                closing.add_done_callback(lambda done: self._running.pop(done, None))
            write_executor.shutdown(wait=False)
            if self._running:
                bound = self._busy_timeout_ms / 1000 + _CLOSE_GRACE_S
                _, late = await asyncio.wait(set(self._running), timeout=bound)
                if late:
                    log.warning("closing the CRM with %d operations still running", len(late))
                    executor.shutdown(wait=False, cancel_futures=True)  # drop those not started
                    write_executor.shutdown(wait=False, cancel_futures=True)
                    if writes is not None:
                        writes.abandon(CrmUnavailable("the CRM closed before this write could run"))
            # let SQLite refresh the statistics its planner uses, where they have gone stale
            # (the plans do not depend on them: the indexes make them right without)
            await asyncio.get_running_loop().run_in_executor(None, optimize, engine)
            engine.dispose()

    # -- the CRM's records ----------------------------------------------------------------------

    async def find_by_phone(self, phone: str) -> Match | None:
        """The known client with this E.164 number: a contact first, then a company, then a
        lead that is not converted; the oldest record when several have the number."""

        row = await self._read_first("look up a phone", _LOOKUP, {"phone": phone})
        if row is None:
            return None
        rank, entity_id, name, responsible = row
        return Match(EntityRef(_LOOKUP_ORDER[rank], entity_id), responsible, name)

    def find_by_phone_now(self, phone: str) -> Match | None:
        """`find_by_phone` on the event loop's own connection, or WouldWait when that
        connection cannot answer within its budget (or is not there: PostgreSQL)."""
        reader = self._reader
        if reader is None:
            raise WouldWait("no reader on the event loop")
        try:
            row = reader.first(_LOOKUP.sql, {**_LOOKUP.defaults, "phone": phone})
        except sqlite3.Error as error:
            raise WouldWait(str(error)) from None
        if row is None:
            return None
        rank, entity_id, name, responsible = row
        return Match(EntityRef(_LOOKUP_ORDER[rank], entity_id), responsible, name)

    async def records_created_by_call(self, linkedid: str) -> CreatedRecords | None:
        """The lead (and, in simple mode, the deal and contact or company) this call created."""
        row = await self._read_first("read the records of a call", _LEAD_OF_CALL, {"linkedid": linkedid})
        return None if row is None else _created_records(row)

    async def create_records(self, plan: RecordPlan) -> CreatedRecords:
        """Create the records of a new client in one transaction.

        classic: a lead (status NEW). simple: a contact or a company, a deal in the plan's
        pipeline at stage NEW, and a lead recorded as converted into them. All get the plan's
        name, source, responsible and linkedid; the lead, contact and company get the phone.
        A second call for the same (linkedid, phone) returns the first records unchanged.
        """

        def create(conn: Connection) -> tuple[CreatedRecords, bool]:
            existing = _records_of_call(conn, plan.linkedid, plan.phone)
            if existing is not None:
                return existing, False
            if conn.dialect.name == "sqlite":  # BEGIN IMMEDIATE: no other writer since the look
                return _insert_records(conn, plan), True
            try:
                with conn.begin_nested():
                    return _insert_records(conn, plan), True
            except exc.IntegrityError:
                # another daemon created them between our look and our insert
                existing = _records_of_call(conn, plan.linkedid, plan.phone)
                if existing is None:
                    raise
                return existing, False

        records, created = await self._run("create records", create, write=True)
        if created:
            log.info(
                "call %s from %s created %s",
                plan.linkedid,
                masked(plan.phone),
                " ".join(str(ref) for ref in records.all),
            )
        return records

    async def record_offer(self, offer: Offer) -> None:
        """Keep an open "create lead / contact" offer for the call window; a second offer for
        the same call (linkedid) is ignored."""
        await self._run("record an offer", lambda conn: store_offer(conn, offer), write=True)

    async def set_responsible(self, entities: tuple[EntityRef, ...], employee: str) -> None:
        """Give these records a new responsible employee (R10). Rejected, with nothing
        changed, when one of them does not exist."""
        await self._run("set the responsible", lambda conn: assign(conn, entities, employee), write=True)

    async def log_call(self, record: CallRecord, *, keep_existing: bool = False) -> None:
        """Record a finished call (R12) on its entity, one row per linkedid. A second record
        replaces the first, unless `keep_existing`: then it replaces only a `partial` first
        record, and a partial record never replaces anything (core.commands.merge_call_log)."""
        if not keep_existing:
            report = CallReport.TRACKED
        else:
            report = CallReport.PARTIAL if record.partial else CallReport.HANGUP
        await self._run("log a call", lambda conn: store_call(conn, record, report, record.entity), write=True)

    # -- administration (command line) --------------------------------------------------------

    async def add_record(
        self,
        kind: RecordKind,
        name: str,
        phone_e164: str,
        responsible: str | None,
        *,
        source: str | None = None,
        if_new: bool = False,
    ) -> Json:
        """Add a contact, company or lead (status NEW) with one phone; returns it as
        `crm list --json` shows it. With `if_new` (`crm add`), a number already on a contact,
        company or lead raises NumberKnown, checked in the same transaction under the number's
        lock: a call creating its records meanwhile is waited for, not doubled."""
        if kind not in ("contact", "company", "lead"):
            raise CrmRejected(f"cannot add a {kind!r}: expected contact, company or lead")
        if not (phone_e164.startswith("+") and phone_e164[1:].isdigit()):
            raise CrmRejected("the phone must be an E.164 number such as +33184880000")
        entity_type = EntityType(kind)
        table = RECORD_TABLES[kind]
        values: dict[str, Any] = {
            "name": name,
            "responsible": responsible,
            "source": source,
            "created_by_call": None,
            "created_at": datetime.now(UTC),
        }
        if entity_type is EntityType.LEAD:
            values["status"] = LEAD_NEW

        def add(conn: Connection) -> Json:
            if if_new:
                lock_number(conn, phone_e164)
                if (owner := _clients_of(conn, {phone_e164}).get(phone_e164)) is not None:
                    raise NumberKnown(owner)
            record_id = _insert(conn, table, values)
            _index_phone(conn, EntityRef(entity_type, record_id), phone_e164)
            (record,) = records_json(conn, entity_type, table.c.id == record_id)
            return record

        return await self._run(f"add a {kind}", add, write=True)

    async def list_records(self, kind: ListKind, phone: str | None = None) -> list[Json]:
        """Every lead, contact, company, deal, call or offer, ordered by id, as JSON objects of
        the command line contract; with `phone` (E.164), only the records that have it in the
        phone index (deals: through their contact or company), the calls with that number,
        the offers for it."""
        return await self._run(
            f"list {kind}", lambda conn: list_json(conn, kind, phone), write=False
        )

    @property
    def import_batch_size(self) -> int:
        """Rows per transaction of `crm import`. On PostgreSQL each batch holds the daemons'
        creations of records off (lock_numbers_for_a_file): 1,000 rows hold them about 70 ms
        on a local server, 5,000 about 350 ms, for the same rows per second."""
        if self._engine is not None and self._engine.dialect.name == "postgresql":
            return POSTGRESQL_IMPORT_BATCH
        return csv_import.BATCH_SIZE

    async def import_contacts(
        self,
        rows: Iterable[ContactRow | RowError] | AsyncIterable[list[ContactRow | RowError]],
        *,
        batch_size: int = csv_import.BATCH_SIZE,
        source: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> ImportResult:
        """Create contacts from parsed CSV rows (see `csv_import.parse_contacts_csv`, or the
        batches of `csv_import.checked_in_a_second_process`), in batches of one transaction
        each; a number already on a contact, company or lead is skipped, bad rows are counted
        as errors."""

        async def insert(batch: list[ContactRow]) -> csv_import.BatchResult:
            work = partial(_insert_contacts, rows=batch, source=source)
            return await self._run("import contacts", work, write=True)

        return await csv_import.import_contacts(
            insert, rows, batch_size=batch_size, progress=progress
        )

    async def read_row(self, action: str, query: _Prepared, values: dict[str, Any]) -> Any:
        """The first row of a point read of the call path built with `prepare` (the outbox's
        call ledger), or None: on the event loop's own connection, like the phone lookup."""
        return await self._read_first(action, query, values)

    async def transaction(self, action: str, work: Callable[[Connection], T], *, write: bool) -> T:
        """Run `work(connection)` as one transaction of this CRM: the queries of the CRM pages
        and the web logins (crm.pages, crm.users) live in their own modules."""
        return await self._run(action, work, write=write)

    # -- plumbing -----------------------------------------------------------------------------

    async def _read_first(self, action: str, query: _Prepared, values: dict[str, Any]) -> Any:
        """The first row of one of the call path's point reads (a few index seeks, tens of
        microseconds), or None.

        On SQLite it runs on the event loop's own read-only connection: a hop to a worker
        thread would cost several times the read itself. That connection never waits (no busy
        timeout) and interrupts any statement that runs past a small budget of steps; then,
        and on any other database error, the read goes to a worker thread like every other
        operation, so a locked or slow database never holds the loop."""
        reader = self._reader
        if reader is not None:
            try:
                return reader.first(query.sql, {**query.defaults, **values})
            except sqlite3.Error as error:
                log.debug("%s on the event loop: %s; trying in a worker thread", action, error)
        return await self._run(
            action, lambda conn: conn.execute(query.statement, values).first(), write=False
        )

    async def _run(self, action: str, work: Callable[[Connection], T], *, write: bool) -> T:
        """Run `work` in a transaction in a worker thread, with the database errors
        translated for the services: a read in its own transaction, a write in the writer
        thread's next transaction (on SQLite it starts with BEGIN IMMEDIATE), shared with the
        other writes waiting then, in a savepoint of its own."""
        engine, executor, writes = self._engine, self._executor, self._writes
        if engine is None or executor is None or writes is None:
            raise CrmUnavailable("the embedded CRM is not open (await open() first)")
        loop = asyncio.get_running_loop()
        if self._running and loop.time() - min(self._running.values()) > self._stalled_after:
            # The database is stalled (a lock, a full disk): queueing more behind it would make
            # every later lookup miss its deadline and every retry add one more copy.
            raise CrmUnavailable(f"the database is not keeping up ({len(self._running)} operations waiting)")

        def transaction() -> T:
            with _crm_errors(action), engine.begin() as conn:
                return work(conn)

        try:
            running = writes.submit(action, work) if write else loop.run_in_executor(executor, transaction)
        except RuntimeError as error:  # closing: the executors are shut down
            raise CrmUnavailable(f"{action}: the embedded CRM is closing") from error
        self._running[running] = loop.time()
        running.add_done_callback(lambda done: self._running.pop(done, None))
        # A caller that gives up does not stop the transaction, close() still waits for it, and
        # the stall check above still counts it while it is queued.
        return await asyncio.shield(running)


def _lookup_query() -> Select[Any]:
    """One query for R6's lookup order: each candidate with its rank, best first. Built once
    with a bound `phone`, so SQLAlchemy compiles it once: routing runs it on every call."""
    candidates = []
    for rank, entity_type in enumerate(_LOOKUP_ORDER):
        table = RECORD_TABLES[entity_type.value]
        candidate = (
            select(
                literal_column(str(rank)).label("rank"),
                table.c.id,
                table.c.name,
                table.c.responsible,
            )
            .join_from(table, phones, phones.c.entity_id == table.c.id)
            .where(phones.c.entity_type == entity_type.value, phones.c.e164 == bindparam("phone"))
        )
        if entity_type is EntityType.LEAD:
            candidate = candidate.where(leads.c.status == LEAD_NEW)
        candidates.append(candidate)
    everyone = union_all(*candidates).subquery()
    return select(everyone).order_by(everyone.c.rank, everyone.c.id).limit(1)


@dataclass(frozen=True)
class _Prepared:
    """A statement of the call path, built once: as SQLAlchemy runs it (any database), and
    as SQLite text with the constant values it binds, for the event loop's reader."""

    statement: Executable
    sql: str
    defaults: dict[str, Any]


def _prepare(statement: Executable) -> _Prepared:
    compiled = cast(ClauseElement, statement).compile(dialect=sqlite.dialect(paramstyle="named"))
    return _Prepared(statement, str(compiled), dict(compiled.params))


_LOOKUP = _prepare(_lookup_query())
prepare = _prepare  # for the other modules of the store (the outbox's ledger read)

# The other statements of the call path, also built once: executing a prebuilt statement with
# its values as parameters skips SQLAlchemy's per-call construction and cache-key work.
_LEAD_OF_CALL_QUERY = (
    select(leads.c.id, leads.c.converted_deal_id, leads.c.converted_contact_id, leads.c.converted_company_id)
    .where(leads.c.created_by_call == bindparam("linkedid"))
    .order_by(leads.c.id)
    .limit(1)
)
_LEAD_OF_CALL = _prepare(_LEAD_OF_CALL_QUERY)
_LEAD_OF_CALL_FOR_PHONE = _LEAD_OF_CALL_QUERY.where(leads.c.created_by_call_phone == bindparam("phone"))
_INSERT = {table: table.insert() for table in (leads, contacts, companies, deals, phones)}
_CREATOR = {kind: select(table.c.created_by_call).where(table.c.id == bindparam("id"))
            for kind, table in RECORD_TABLES.items()}


def _call_log_upsert(dialect: str, report: CallReport) -> postgresql.Insert | sqlite.Insert:
    """The call log's write of a report of `report`'s kind, as `commands.replaces` says: a
    first report is inserted; tracking's replaces any; the hangup report only a partial one;
    a partial one none."""
    if report is CallReport.TRACKED:
        return _upsert(dialect, calls, replace=True)
    if report is CallReport.PARTIAL:
        return _upsert(dialect, calls, replace=False)
    return _upsert(dialect, calls, replace=True, where=calls.c.partial.is_(True))

# SET entity_type, entity_id: the columns of the values given (see _execute)
_ATTACH_CALL = calls.update().where(calls.c.linkedid == bindparam("call_linkedid"), calls.c.entity_type.is_(None))


@cache
def _upsert(dialect: str, table: Table, *, replace: bool,
            where: ColumnElement[bool] | None = None) -> postgresql.Insert | sqlite.Insert:
    """The INSERT of a row keyed by its linkedid: when the linkedid is already there, the row
    is replaced by the new values (every column but the id), or left as it is; with `where`,
    replaced only when the row there meets it."""
    statement = (postgresql if dialect == "postgresql" else sqlite).insert(table)
    if not replace:
        return statement.on_conflict_do_nothing(index_elements=["linkedid"])
    replaced = {
        column.name: statement.excluded[column.name]
        for column in table.c
        if column.name not in ("id", "linkedid")
    }
    return statement.on_conflict_do_update(index_elements=["linkedid"], set_=replaced, where=where)


_CALL_LOG_UPSERT = {postgres: {report: _call_log_upsert("postgresql" if postgres else "sqlite", report)
                               for report in CallReport}
                    for postgres in (False, True)}


def store_offer(conn: Connection, offer: Offer) -> None:
    """Keep an open offer, in this transaction; a second one for the same call is ignored."""
    values = {
        "linkedid": offer.linkedid,
        "direction": offer.direction.value,
        "line": offer.line,
        "phone": offer.phone,
        "employees": list(offer.employees),
        "status": OFFER_OPEN,
        "created_at": offer.created_at,
    }
    conn.execute(_upsert(conn.dialect.name, offers, replace=False), values)


def assign(conn: Connection, entities: tuple[EntityRef, ...], employee: str) -> None:
    """Give these records a new responsible, in this transaction; CrmRejected when one is missing."""
    for entity_type in {entity.type for entity in entities}:
        table = RECORD_TABLES[entity_type.value]
        ids = {entity.id for entity in entities if entity.type is entity_type}
        result = conn.execute(table.update().where(table.c.id.in_(ids)).values(responsible=employee))
        if result.rowcount != len(ids):
            wanted = ", ".join(f"{entity_type.value}:{i}" for i in sorted(ids))
            raise CrmRejected(f"set responsible: not every one of {wanted} exists")


def attach_call(conn: Connection, linkedid: str, entity: EntityRef) -> None:
    """The call `linkedid`, if it is already logged on no record, is logged on `entity` (its
    records came after its log: an offer taken later, a creation delivered after the call's
    log while the database was held)."""
    _execute(conn, _ATTACH_CALL, calls, {"call_linkedid": linkedid, "entity_type": entity.type.value, "entity_id": entity.id})


def store_call(conn: Connection, record: CallRecord, report: CallReport, entity: EntityRef | None) -> None:
    """Log a finished call on `entity`, in this transaction, keeping what merge_call_log says
    of this report against the entry already there (`commands.replaces`), decided by the
    database in the write itself: two daemons of one PBX (a fail-over pair, both following
    the calls) logging the same call's two reports at once cannot have the hangup report
    replace tracking's because each looked before the other wrote."""
    kept = record
    values = {
        "linkedid": kept.linkedid,
        "direction": kept.direction.value,
        "line": kept.line,
        "number": kept.number,
        "disposition": kept.disposition.value,
        "answered_by": kept.answered_by,
        "employees": list(kept.employees),
        "started_at": kept.started_at,
        "answered_at": kept.answered_at,
        "ended_at": kept.ended_at,
        "ring_seconds": kept.ring_seconds,
        "talk_seconds": kept.talk_seconds,
        "transfers": [
            {"from": t.from_employee, "to": t.to_employee, "kind": t.kind.value}
            for t in kept.transfers
        ],
        "entity_type": entity.type.value if entity else None,
        "entity_id": entity.id if entity else None,
        "partial": kept.partial,
    }
    _execute(conn, _CALL_LOG_UPSERT[conn.dialect.name == "postgresql"][report], calls, values)


# PostgreSQL advisory locks, held until the transaction ends. A transaction that creates the
# records of one number holds that number's lock, and the "records from a file" lock shared;
# a batch of `crm import` holds the latter alone (thousands of number locks would fill the
# server's lock table), so it waits for the creations in flight and they wait for it.
_RECORDS_FROM_A_FILE = "hashtextextended('agi-daemon: records from a file', 0)"
_NUMBER_LOCK = text(f"SELECT pg_advisory_xact_lock_shared({_RECORDS_FROM_A_FILE}),"
                    " pg_advisory_xact_lock(hashtextextended(:phone, 0))")
_FILE_LOCK = text(f"SELECT pg_advisory_xact_lock({_RECORDS_FROM_A_FILE})")


def lock_number(conn: Connection, phone: str) -> None:
    """Before looking a number up to create its records: on PostgreSQL, wait until no other
    transaction is creating records for it, an import batch included. Daemons of several PBXs
    share one database, and a new number calling two of them at once (or imported while it
    calls) would otherwise get two sets of records: neither transaction sees the other's
    insert. On SQLite the writer is alone: nothing to wait for."""
    if conn.dialect.name == "postgresql":
        conn.execute(_NUMBER_LOCK, {"phone": phone})


def lock_numbers_for_a_file(conn: Connection) -> None:
    """Before an import batch looks its numbers up: on PostgreSQL, wait until no transaction
    is creating records for any number (see lock_number), and hold them off until this one ends."""
    if conn.dialect.name == "postgresql":
        conn.execute(_FILE_LOCK)


def lookup_in(conn: Connection, phone: str) -> EntityRef | None:
    """R6's lookup, in this transaction: the known client's record, or None."""
    row = _execute(conn, _LOOKUP.statement, phones, {"phone": phone}).fetchone()
    return None if row is None else EntityRef(_LOOKUP_ORDER[row[0]], row[1])


def creator_call(conn: Connection, entity: EntityRef) -> str | None:
    """The linkedid of the call that created this record, or None."""
    table = RECORD_TABLES[entity.type.value]
    row = _execute(conn, _CREATOR[entity.type.value], table, {"id": entity.id}).fetchone()
    return None if row is None else row[0]


def records_of_call(conn: Connection, linkedid: str, phone: str | None) -> CreatedRecords | None:
    return _records_of_call(conn, linkedid, phone)


def insert_records(conn: Connection, plan: RecordPlan) -> CreatedRecords:
    return _insert_records(conn, plan)


def _records_of_call(
    conn: Connection, linkedid: str, phone: str | None
) -> CreatedRecords | None:
    """The records created by this call (for this caller's phone, when given): its lead and
    what the lead was converted into."""
    if phone is None:
        found = _execute(conn, _LEAD_OF_CALL.statement, leads, {"linkedid": linkedid})
    else:
        found = _execute(conn, _LEAD_OF_CALL_FOR_PHONE, leads, {"linkedid": linkedid, "phone": phone})
    lead = found.fetchone()
    return None if lead is None else _created_records(lead)


def _created_records(lead: Any) -> CreatedRecords:
    """The records of a call from its lead's row (id, converted deal, contact, company)."""
    lead_id, deal_id, contact_id, company_id = lead
    return CreatedRecords(
        lead=EntityRef(EntityType.LEAD, lead_id),
        deal=None if deal_id is None else EntityRef(EntityType.DEAL, deal_id),
        contact=None if contact_id is None else EntityRef(EntityType.CONTACT, contact_id),
        company=None if company_id is None else EntityRef(EntityType.COMPANY, company_id),
    )


def _insert_records(conn: Connection, plan: RecordPlan) -> CreatedRecords:
    common = {
        "name": plan.name,
        "responsible": plan.responsible,
        "source": plan.source,
        "created_by_call": plan.linkedid,
        "created_at": datetime.now(UTC),
    }
    if plan.contact_only:  # the call window's "create contact": the contact alone stands for the call's records
        alone = EntityRef(EntityType.CONTACT, _insert(conn, contacts, common))
        _index_phone(conn, alone, plan.phone)
        return CreatedRecords(lead=alone, contact=alone)
    lead_values: dict[str, object] = {**common, "status": LEAD_NEW, "created_by_call_phone": plan.phone}
    if plan.mode is CrmMode.CLASSIC:
        lead = EntityRef(EntityType.LEAD, _insert(conn, leads, lead_values))
        _index_phone(conn, lead, plan.phone)
        return CreatedRecords(lead=lead)

    contact = company = None
    if plan.create_with is CreateWith.COMPANY:
        company = EntityRef(EntityType.COMPANY, _insert(conn, companies, common))
        client = company
    else:
        contact = EntityRef(EntityType.CONTACT, _insert(conn, contacts, common))
        client = contact
    deal_values = {
        **common,
        "pipeline": plan.pipeline,
        "stage": DEAL_FIRST_STAGE,
        "contact_id": contact.id if contact else None,
        "company_id": company.id if company else None,
    }
    deal = EntityRef(EntityType.DEAL, _insert(conn, deals, deal_values))
    lead_values.update(
        status=LEAD_CONVERTED,
        converted_contact_id=contact.id if contact else None,
        converted_company_id=company.id if company else None,
        converted_deal_id=deal.id,
    )
    lead = EntityRef(EntityType.LEAD, _insert(conn, leads, lead_values))
    _index_phone(conn, client, plan.phone)
    _index_phone(conn, lead, plan.phone)
    return CreatedRecords(lead=lead, deal=deal, contact=contact, company=company)


def _insert(conn: Connection, table: Table, values: dict[str, Any]) -> int:
    if conn.dialect.name == "sqlite":
        record_id = _execute(conn, _INSERT[table], table, values).lastrowid
    else:
        (record_id,) = conn.execute(_INSERT[table], values).inserted_primary_key or (None,)
    if record_id is None:
        raise CrmRejected(f"the database returned no id for the new {table.name} row")
    return int(record_id)


def _index_phone(conn: Connection, entity: EntityRef, e164: str) -> None:
    _execute(conn, _INSERT[phones], phones,
             {"entity_type": entity.type.value, "entity_id": entity.id, "e164": e164})


def execute_prepared(conn: Connection, statement: Executable, table: Table, values: dict[str, Any]) -> Any:
    """`_execute` for the other modules of the store (the outbox): a statement built once at
    import, its values bound by `table`'s column types."""
    return _execute(conn, statement, table, values)


def _execute(conn: Connection, statement: Executable, table: Table, values: dict[str, Any]) -> Any:
    """Run one of the call path's prebuilt statements in the transaction of `conn`; returns a
    cursor (rows by position, `lastrowid`). On SQLite the statement's text runs straight on
    the driver's connection: SQLAlchemy's work per execution (context, caches, result
    objects) costs more than such a statement itself."""
    if conn.dialect.name != "sqlite":
        return conn.execute(statement, values)
    sql, processors = _sqlite_text(statement, table, tuple(values))
    params = values
    if processors:
        params = dict(values)
        for name, process in processors:
            params[name] = process(params[name])
    return conn.connection.dbapi_connection.execute(sql, params)  # type: ignore[union-attr]  # open: in a transaction


_SQLITE = sqlite.dialect(paramstyle="named")


@cache
def _sqlite_text(statement: Executable, table: Table,
                 names: tuple[str, ...]) -> tuple[str, tuple[tuple[str, Callable[[Any], Any]], ...]]:
    """The statement as SQLite text for values with these names, and how the values that need
    it are stored (the columns' types: aware datetimes as UTC text, JSON as text, booleans as 0/1)."""
    compiled = cast(ClauseElement, statement).compile(dialect=_SQLITE, column_keys=list(names))
    processors: list[tuple[str, Callable[[Any], Any]]] = []
    for name in names:
        column = table.c.get(name)
        process = None if column is None else column.type.bind_processor(_SQLITE)
        if process is not None:
            processors.append((name, process))
    constants = {name: value for name, value in compiled.params.items() if name not in names}
    sql = str(compiled)
    for name, value in constants.items():  # values the statement itself binds (a LIMIT, say)
        sql = re.sub(rf":{name}\b", _sqlite_literal(value), sql)
    return sql, tuple(processors)


def _sqlite_literal(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "1", False: "0", None: "NULL"}[value]
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


@contextmanager
def _crm_errors(action: str) -> Iterator[None]:
    """Translate database errors into the CRM errors the services handle: a locked or
    unreachable database is CrmUnavailable (retry later), a refused write CrmRejected. The
    database's text is kept with the numbers it quotes masked, and without the driver's error
    as the cause: SQLAlchemy's names the statement's parameters, which a traceback would log."""
    try:
        yield
    except (exc.IntegrityError, exc.DataError, exc.ProgrammingError) as error:
        raise CrmRejected(f"{action}: {numbers_masked(str(error.orig))}") from None
    except exc.DBAPIError as error:  # OperationalError, InterfaceError, InternalError, ...
        raise CrmUnavailable(f"{action}: {numbers_masked(str(error.orig))}") from None
    except exc.StatementError as error:  # a value the columns cannot hold (DBAPIError's base)
        raise CrmRejected(f"{action}: {numbers_masked(str(error.orig))}") from None
    except (exc.TimeoutError, exc.DisconnectionError, OSError) as error:
        raise CrmUnavailable(f"{action}: {numbers_masked(str(error))}") from None
    # the call path's statements that run straight on SQLite's driver (see _execute)
    except (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError) as error:
        raise CrmRejected(f"{action}: {numbers_masked(str(error))}") from None
    except sqlite3.Error as error:  # OperationalError (locked, disk full), DatabaseError, ...
        raise CrmUnavailable(f"{action}: {numbers_masked(str(error))}") from None


def _clients_of(conn: Connection, numbers: set[str]) -> dict[str, str]:
    """The record ("contact:12") each of `numbers` is already on, for the ones on a contact,
    company or lead: the first of the kinds in CLIENT_TYPES' order, the oldest of its kind."""
    found = conn.execute(
        select(phones.c.e164, phones.c.entity_type, phones.c.entity_id).where(
            phones.c.entity_type.in_([kind.value for kind in CLIENT_TYPES]),
            phones.c.e164.in_(numbers),
        )
    )
    rank = {kind.value: index for index, kind in enumerate(CLIENT_TYPES)}
    owner: dict[str, str] = {}
    for e164, entity_type, entity_id in sorted(found, key=lambda hit: (rank[hit[1]], hit[2])):
        owner.setdefault(e164, f"{entity_type}:{entity_id}")
    return owner


def _insert_contacts(conn: Connection, rows: list[ContactRow], source: str | None) -> csv_import.BatchResult:
    """Create the contacts of one import batch whose numbers are on no contact, company or
    lead yet (as `crm add` refuses them); returns the rows created and the notes of the rows
    skipped. On SQLite, inside the batch's write transaction, the new ids are known in
    advance and the rows go in by executemany."""
    lock_numbers_for_a_file(conn)
    owner = _clients_of(conn, {row.phone for row in rows})
    new_rows: list[ContactRow] = []
    duplicates: list[RowError] = []
    for row in rows:
        if row.phone in owner:
            duplicates.append(RowError(row.line_number, f"skipped: {already_on(owner[row.phone], row.phone)}"))
        else:
            owner[row.phone] = f"the contact of line {row.line_number}"
            new_rows.append(row)
    if not new_rows:
        return new_rows, duplicates
    created_at = datetime.now(UTC)
    if conn.dialect.name == "sqlite":  # BEGIN IMMEDIATE: nobody else writes until COMMIT
        process = contacts.c.created_at.type.bind_processor(conn.dialect)
        stored_at = created_at if process is None else process(created_at)
        first = conn.execute(select(func.coalesce(func.max(contacts.c.id), 0))).scalar_one() + 1
        ids = range(first, first + len(new_rows))
        conn.exec_driver_sql(
            "INSERT INTO contacts (id, name, responsible, source, created_by_call, created_at)"
            " VALUES (?, ?, ?, ?, NULL, ?)",
            [(i, row.name, row.responsible, source, stored_at) for i, row in zip(ids, new_rows, strict=True)],
        )
        conn.exec_driver_sql(
            "INSERT INTO phones (entity_type, entity_id, e164) VALUES ('contact', ?, ?)",
            [(i, row.phone) for i, row in zip(ids, new_rows, strict=True)],
        )
        return new_rows, duplicates
    inserted = conn.execute(
        contacts.insert().returning(contacts.c.id, sort_by_parameter_order=True),
        [
            {"name": row.name, "responsible": row.responsible, "source": source,
             "created_by_call": None, "created_at": created_at}
            for row in new_rows
        ],
    )
    conn.execute(
        phones.insert(),
        [
            {"entity_type": EntityType.CONTACT.value, "entity_id": contact_id, "e164": row.phone}
            for contact_id, row in zip(inserted.scalars(), new_rows, strict=True)
        ],
    )
    return new_rows, duplicates
