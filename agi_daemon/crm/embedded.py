"""The embedded CRM: leads, contacts, companies and deals kept in the daemon's own database.

The default `CrmAdapter`. SQLite out of the box (`sqlite:///var/crm.sqlite3`), PostgreSQL by
changing the URL. Besides the adapter methods the routing and call services use, it offers
the administration of the command line: add a record, list records, import contacts.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal, Self

from sqlalchemy import Select, Table, bindparam, exc, literal_column, select, union_all
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

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
from ..core.phone import masked
from ..core.ports import CrmRejected, CrmUnavailable
from . import csv_import, migrations
from .csv_import import ContactRow, ImportResult, RowError
from .database import WRITE, async_url, sqlite_file, sync_url, tune_sqlite
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


class EmbeddedCrm:
    """The CRM in the daemon's database. `await open()` before use, `await close()` after
    (or `async with EmbeddedCrm(url) as crm`)."""

    def __init__(self, url: str, *, busy_timeout_ms: int = 5000) -> None:
        self.url = async_url(url)
        self._busy_timeout_ms = busy_timeout_ms
        self._engine: AsyncEngine | None = None
        self._writer: AsyncEngine | None = None
        self._open_lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Create the database if needed and bring its schema to the latest migration.
        Idempotent. The migrations run in a worker thread: the event loop never waits."""
        async with self._open_lock:
            if self._engine is not None:
                return
            with _crm_errors("open the CRM database"):
                database = sqlite_file(self.url)
                if database is not None:
                    database.parent.mkdir(parents=True, exist_ok=True)
                await asyncio.to_thread(
                    migrations.upgrade_to_head, sync_url(self.url), self._busy_timeout_ms
                )
            engine = create_async_engine(self.url)
            tune_sqlite(engine.sync_engine, self._busy_timeout_ms)
            self._engine, self._writer = engine, engine.execution_options(**WRITE)

    async def close(self) -> None:
        """Release the database connections. The CRM can be opened again."""
        engine, self._engine, self._writer = self._engine, None, None
        if engine is not None:
            await engine.dispose()

    # -- CrmAdapter ---------------------------------------------------------------------------

    async def find_by_phone(self, phone: str) -> Match | None:
        """The known client with this E.164 number: a contact first, then a company, then a
        lead that is not converted; the oldest record when several have the number."""
        with _crm_errors("look up a phone"):
            async with self._reader().connect() as conn:
                row = (await conn.execute(_LOOKUP, {"phone": phone})).first()
        if row is None:
            return None
        return Match(EntityRef(_LOOKUP_ORDER[row.rank], row.id), row.responsible, row.name)

    async def records_created_by_call(self, linkedid: str) -> CreatedRecords | None:
        """The lead (and, in simple mode, the deal and contact or company) this call created."""
        with _crm_errors("read the records of a call"):
            async with self._reader().connect() as conn:
                return await _records_of_call(conn, linkedid, None)

    async def create_records(self, plan: RecordPlan) -> CreatedRecords:
        """Create the records of a new client in one transaction.

        classic: a lead (status NEW). simple: a contact or a company, a deal in the plan's
        pipeline at stage NEW, and a lead recorded as converted into them. All get the plan's
        name, source, responsible and linkedid; the lead, contact and company get the phone.
        A second call for the same (linkedid, phone) returns the first records unchanged.
        """
        with _crm_errors("create records"):
            try:
                async with self._writing().begin() as conn:
                    existing = await _records_of_call(conn, plan.linkedid, plan.phone)
                    if existing is not None:
                        return existing
                    created = await _insert_records(conn, plan)
                log.info(
                    "call %s from %s created %s",
                    plan.linkedid,
                    masked(plan.phone),
                    " ".join(str(ref) for ref in created.all),
                )
                return created
            except exc.IntegrityError:
                # another daemon created them between our look and our insert
                async with self._reader().connect() as conn:
                    existing = await _records_of_call(conn, plan.linkedid, plan.phone)
                if existing is None:
                    raise
                return existing

    async def record_offer(self, offer: Offer) -> None:
        """Keep an open "create lead / contact" offer for the call window; a second offer for
        the same call (linkedid) is ignored."""
        values = {
            "linkedid": offer.linkedid,
            "direction": offer.direction.value,
            "line": offer.line,
            "phone": offer.phone,
            "employees": list(offer.employees),
            "status": OFFER_OPEN,
            "created_at": offer.created_at,
        }
        with _crm_errors("record an offer"):
            async with self._writing().begin() as conn:
                statement = self._upsert(offers).values(values)
                await conn.execute(statement.on_conflict_do_nothing(index_elements=["linkedid"]))

    async def set_responsible(self, entities: tuple[EntityRef, ...], employee: str) -> None:
        """Give these records a new responsible employee (R10). Rejected, with nothing
        changed, when one of them does not exist."""
        with _crm_errors("set the responsible"):
            async with self._writing().begin() as conn:
                for entity_type in {entity.type for entity in entities}:
                    table = RECORD_TABLES[entity_type.value]
                    ids = {entity.id for entity in entities if entity.type is entity_type}
                    result = await conn.execute(
                        table.update().where(table.c.id.in_(ids)).values(responsible=employee)
                    )
                    if result.rowcount != len(ids):
                        wanted = ", ".join(f"{entity_type.value}:{i}" for i in sorted(ids))
                        raise CrmRejected(f"set responsible: not every one of {wanted} exists")

    async def log_call(self, record: CallRecord, *, keep_existing: bool = False) -> None:
        """Record a finished call (R12) on its entity. A second record of the same call
        (linkedid) replaces the first, unless `keep_existing`: then the first one stays."""
        values = {
            "linkedid": record.linkedid,
            "direction": record.direction.value,
            "line": record.line,
            "number": record.number,
            "disposition": record.disposition.value,
            "answered_by": record.answered_by,
            "employees": list(record.employees),
            "started_at": record.started_at,
            "answered_at": record.answered_at,
            "ended_at": record.ended_at,
            "ring_seconds": record.ring_seconds,
            "talk_seconds": record.talk_seconds,
            "transfers": [
                {"from": t.from_employee, "to": t.to_employee, "kind": t.kind.value}
                for t in record.transfers
            ],
            "entity_type": record.entity.type.value if record.entity else None,
            "entity_id": record.entity.id if record.entity else None,
        }
        with _crm_errors("log a call"):
            async with self._writing().begin() as conn:
                statement = self._upsert(calls).values(values)
                if keep_existing:
                    await conn.execute(statement.on_conflict_do_nothing(index_elements=["linkedid"]))
                    return
                replaced = {key: statement.excluded[key] for key in values if key != "linkedid"}
                await conn.execute(
                    statement.on_conflict_do_update(index_elements=["linkedid"], set_=replaced)
                )

    # -- administration (command line) --------------------------------------------------------

    async def add_record(
        self,
        kind: RecordKind,
        name: str,
        phone_e164: str,
        responsible: str | None,
        *,
        source: str | None = None,
    ) -> Json:
        """Add a contact, company or lead (status NEW) with one phone; returns it as
        `crm list --json` shows it."""
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
        with _crm_errors(f"add a {kind}"):
            async with self._writing().begin() as conn:
                record_id = await _insert(conn, table, values)
                await _index_phone(conn, EntityRef(entity_type, record_id), phone_e164)
                (record,) = await records_json(conn, entity_type, table.c.id == record_id)
        return record

    async def list_records(self, kind: ListKind, phone: str | None = None) -> list[Json]:
        """Every lead, contact, company, deal, call or offer, ordered by id, as JSON objects of
        the command line contract; with `phone` (E.164), only the records that have it in the
        phone index (deals: through their contact or company), the calls with that number,
        the offers for it."""
        with _crm_errors(f"list {kind}"):
            async with self._reader().connect() as conn:
                return await list_json(conn, kind, phone)

    async def import_contacts(
        self,
        rows: Iterable[ContactRow | RowError],
        *,
        batch_size: int = 500,
        source: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> ImportResult:
        """Create contacts from parsed CSV rows (see `csv_import.parse_contacts_csv`), in
        batches; a number already on a contact is skipped, bad rows are counted as errors."""
        with _crm_errors("import contacts"):
            return await csv_import.import_contacts(
                self._writing(), rows, batch_size=batch_size, source=source, progress=progress
            )

    # -- plumbing -----------------------------------------------------------------------------

    def _reader(self) -> AsyncEngine:
        if self._engine is None:
            raise CrmUnavailable("the embedded CRM is not open (await open() first)")
        return self._engine

    def _writing(self) -> AsyncEngine:
        if self._writer is None:
            raise CrmUnavailable("the embedded CRM is not open (await open() first)")
        return self._writer

    def _upsert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        """An INSERT that can say what to do when the linkedid is already there."""
        dialect = self._reader().dialect.name
        module = postgresql if dialect == "postgresql" else sqlite
        return module.insert(table)


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


_LOOKUP = _lookup_query()


async def _records_of_call(
    conn: AsyncConnection, linkedid: str, phone: str | None
) -> CreatedRecords | None:
    """The records created by this call (for this caller's phone, when given): its lead and
    what the lead was converted into."""
    query = select(leads).where(leads.c.created_by_call == linkedid).order_by(leads.c.id).limit(1)
    if phone is not None:
        query = query.where(leads.c.created_by_call_phone == phone)
    lead = (await conn.execute(query)).mappings().first()
    if lead is None:
        return None

    def ref(entity_type: EntityType, column: str) -> EntityRef | None:
        return None if lead[column] is None else EntityRef(entity_type, lead[column])

    return CreatedRecords(
        lead=EntityRef(EntityType.LEAD, lead["id"]),
        deal=ref(EntityType.DEAL, "converted_deal_id"),
        contact=ref(EntityType.CONTACT, "converted_contact_id"),
        company=ref(EntityType.COMPANY, "converted_company_id"),
    )


async def _insert_records(conn: AsyncConnection, plan: RecordPlan) -> CreatedRecords:
    common = {
        "name": plan.name,
        "responsible": plan.responsible,
        "source": plan.source,
        "created_by_call": plan.linkedid,
        "created_at": datetime.now(UTC),
    }
    lead_values = {**common, "status": LEAD_NEW, "created_by_call_phone": plan.phone}
    if plan.mode is CrmMode.CLASSIC:
        lead = EntityRef(EntityType.LEAD, await _insert(conn, leads, lead_values))
        await _index_phone(conn, lead, plan.phone)
        return CreatedRecords(lead=lead)

    contact = company = None
    if plan.create_with is CreateWith.COMPANY:
        company = EntityRef(EntityType.COMPANY, await _insert(conn, companies, common))
        client = company
    else:
        contact = EntityRef(EntityType.CONTACT, await _insert(conn, contacts, common))
        client = contact
    deal_values = {
        **common,
        "pipeline": plan.pipeline,
        "stage": DEAL_FIRST_STAGE,
        "contact_id": contact.id if contact else None,
        "company_id": company.id if company else None,
    }
    deal = EntityRef(EntityType.DEAL, await _insert(conn, deals, deal_values))
    lead_values.update(
        status=LEAD_CONVERTED,
        converted_contact_id=contact.id if contact else None,
        converted_company_id=company.id if company else None,
        converted_deal_id=deal.id,
    )
    lead = EntityRef(EntityType.LEAD, await _insert(conn, leads, lead_values))
    await _index_phone(conn, client, plan.phone)
    await _index_phone(conn, lead, plan.phone)
    return CreatedRecords(lead=lead, deal=deal, contact=contact, company=company)


async def _insert(conn: AsyncConnection, table: Table, values: dict[str, Any]) -> int:
    result = await conn.execute(table.insert().values(values))
    (record_id,) = result.inserted_primary_key or (None,)
    if record_id is None:
        raise CrmRejected(f"the database returned no id for the new {table.name} row")
    return int(record_id)


async def _index_phone(conn: AsyncConnection, entity: EntityRef, e164: str) -> None:
    await conn.execute(
        phones.insert().values(entity_type=entity.type.value, entity_id=entity.id, e164=e164)
    )


@contextmanager
def _crm_errors(action: str) -> Iterator[None]:
    """Translate database errors into the CRM errors the services handle: a locked or
    unreachable database is CrmUnavailable (retry later), a refused write CrmRejected."""
    try:
        yield
    except (exc.IntegrityError, exc.DataError, exc.ProgrammingError) as error:
        raise CrmRejected(f"{action}: {error.orig}") from error
    except exc.DBAPIError as error:  # OperationalError, InterfaceError, InternalError, ...
        raise CrmUnavailable(f"{action}: {error.orig}") from error
    except exc.StatementError as error:  # a value the columns cannot hold
        raise CrmRejected(f"{action}: {error.orig}") from error
    except (exc.TimeoutError, exc.DisconnectionError, OSError) as error:
        raise CrmUnavailable(f"{action}: {error}") from error

