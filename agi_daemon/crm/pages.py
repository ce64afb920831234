"""What the CRM pages and the call window read and change in the embedded CRM.

Lists with filters (phone, responsible, line, dates), an entity's page with its calls, edits
of a record's name and responsible, the conversion of a lead (classic mode), the last calls of
a number, the calls per hour, and what the call window does with an offer (R3).
Each method is one transaction of the CRM (`EmbeddedCrm.transaction`); the JSON shapes are
those of `crm list --json`.
"""
from __future__ import annotations

import json

from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, Connection, String, and_, or_, select, type_coerce

from ..core.commands import pbx_linkedid
from ..core.crm_queries import KEEP, Keep, PAGE_SIZE, CallFilter, RecordFilter
from ..core.model import EntityRef, EntityType, name_too_long
from ..core.ports import CrmRejected
from .embedded import attach_call
from .records_json import Json, _has_phone, call_json, records_json
from .tables import RECORD_TABLES, calls, contacts, deals, leads, offers, phones

OFFER_TAKEN = "taken"



class CrmPages:
    def __init__(self, crm, *, pbx: str | None = None) -> None:
        """`crm`: an EmbeddedCrm; `pbx`: this daemon's daemon.pbx_id (None: it names no PBX)."""
        self._crm = crm
        self._pbx = pbx

    async def records(self, entity_type: EntityType, where: RecordFilter) -> list[Json]:
        return await self._crm.transaction("list records", lambda conn: _records(conn, entity_type, where), write=False)

    async def calls(self, where: CallFilter) -> list[Json]:
        """Newest first."""
        return await self._crm.transaction("list calls", lambda conn: _calls(conn, where), write=False)

    async def call(self, linkedid: str, pbx: str | None = None) -> Json | None:
        """The call of this Asterisk linkedid on `pbx` (by default this daemon's PBX; several
        PBXs sharing one store may number two calls alike); None when there is none."""
        stored = pbx_linkedid(pbx or self._pbx, linkedid)

        def read(conn: Connection) -> Json | None:
            row = conn.execute(select(calls).where(calls.c.linkedid == stored)).mappings().first()
            return None if row is None else call_json(row)

        return await self._crm.transaction("read a call", read, write=False)

    async def entity(self, ref: EntityRef) -> tuple[Json, list[Json]] | None:
        """The record and the calls logged on it (newest first); None when it does not exist."""

        def read(conn: Connection) -> tuple[Json, list[Json]] | None:
            table = RECORD_TABLES[ref.type.value]
            found = records_json(conn, ref.type, table.c.id == ref.id)
            if not found:
                return None
            query = (select(calls).where(calls.c.entity_type == ref.type.value, calls.c.entity_id == ref.id)
                     .order_by(calls.c.started_at.desc()).limit(PAGE_SIZE))
            return found[0], [call_json(row) for row in conn.execute(query).mappings()]

        return await self._crm.transaction("read a record", read, write=False)

    async def update(self, ref: EntityRef, *, name: str | None = None, responsible: str | None | Keep = KEEP) -> None:
        """The record's name and responsible, each left as it is when not given (KEEP, None name)."""
        values: dict[str, str | None] = {}
        if name is not None:
            if not name.strip():
                raise CrmRejected("a record needs a name")
            if (too_long := name_too_long(name.strip())) is not None:
                raise CrmRejected(too_long)
            values["name"] = name.strip()
        if not isinstance(responsible, Keep):
            values["responsible"] = responsible

        def change(conn: Connection) -> None:
            table = RECORD_TABLES[ref.type.value]
            if not values:
                found = conn.execute(select(table.c.id).where(table.c.id == ref.id)).first()
                if found is None:
                    raise CrmRejected(f"no {ref}")
                return
            done = conn.execute(table.update().where(table.c.id == ref.id).values(**values))
            if done.rowcount != 1:
                raise CrmRejected(f"no {ref}")

        await self._crm.transaction("edit a record", change, write=True)

    async def convert_lead(self, lead_id: int, pipeline: str) -> tuple[EntityRef, EntityRef]:
        """Classic mode: the lead becomes a contact (with its phones) and a deal in `pipeline`;
        the lead stays, marked CONVERTED. Returns (contact, deal)."""

        def convert(conn: Connection) -> tuple[EntityRef, EntityRef]:
            # locked until the end (PostgreSQL; SQLite has one writer): two daemons converting the
            # same lead at once (a double click) make one contact and one deal, the second is refused
            lead = conn.execute(select(leads).where(leads.c.id == lead_id).with_for_update()).mappings().first()
            if lead is None:
                raise CrmRejected(f"no lead:{lead_id}")
            if lead["status"] != "NEW":
                raise CrmRejected(f"lead:{lead_id} is already converted")
            common = {"name": lead["name"], "responsible": lead["responsible"], "source": lead["source"],
                      "created_by_call": lead["created_by_call"], "created_at": datetime.now(UTC)}
            contact_key = conn.execute(contacts.insert().values(**common)).inserted_primary_key
            assert contact_key is not None
            contact_id = contact_key[0]
            deal_key = conn.execute(deals.insert().values(**common, pipeline=pipeline, stage="NEW",
                                                          contact_id=contact_id)).inserted_primary_key
            assert deal_key is not None
            deal_id = deal_key[0]
            numbers = conn.execute(select(phones.c.e164).where(phones.c.entity_type == "lead",
                                                               phones.c.entity_id == lead_id)).scalars().all()
            for number in numbers:
                conn.execute(phones.insert().values(entity_type="contact", entity_id=contact_id, e164=number))
            conn.execute(leads.update().where(leads.c.id == lead_id).values(
                status="CONVERTED", converted_contact_id=contact_id, converted_deal_id=deal_id))
            return EntityRef(EntityType.CONTACT, contact_id), EntityRef(EntityType.DEAL, deal_id)

        return await self._crm.transaction("convert a lead", convert, write=True)

    async def last_calls(self, phone: str, limit: int = 5, employee: str | None = None) -> list[Json]:
        """The number's latest calls; with `employee`, those they took part in only."""
        return await self.calls(CallFilter(phone=phone, employee=employee, limit=limit))

    async def calls_per_hour(self, now: datetime, hours: int = 24) -> list[tuple[datetime, int, int]]:
        """(hour, answered, missed) for each of the last `hours` hours, oldest first; missed
        counts every call not answered (missed, busy, failed)."""
        start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)

        def count(conn: Connection) -> list[tuple[datetime, int, int]]:
            rows = conn.execute(select(calls.c.started_at, calls.c.disposition).where(calls.c.started_at >= start))
            slots = {start + timedelta(hours=i): [0, 0] for i in range(hours)}
            for started_at, disposition in rows:
                hour = started_at.replace(minute=0, second=0, microsecond=0)
                if hour in slots:
                    slots[hour][0 if disposition == "answered" else 1] += 1
            return [(hour, answered, missed) for hour, (answered, missed) in slots.items()]

        return await self._crm.transaction("count calls per hour", count, write=False)

    async def take_offer(self, linkedid: str, records: EntityRef) -> None:
        """The agent created the records an offer proposed: the offer is taken, and the call,
        if it is already logged without a record, is logged on them (R12)."""

        stored = pbx_linkedid(self._pbx, linkedid)  # as this daemon's outbox stored the offer and the call

        def take(conn: Connection) -> None:
            conn.execute(offers.update().where(offers.c.linkedid == stored).values(status=OFFER_TAKEN))
            attach_call(conn, stored, records)

        await self._crm.transaction("take an offer", take, write=True)


def _records(conn: Connection, entity_type: EntityType, where: RecordFilter) -> list[Json]:
    table = RECORD_TABLES[entity_type.value]
    conditions: list[ColumnElement[bool]] = []
    if where.phone:
        conditions.append(_has_phone(entity_type, where.phone))
    if where.responsible:
        conditions.append(table.c.responsible == where.responsible)
    if where.pipeline and entity_type is EntityType.DEAL:
        conditions.append(deals.c.pipeline == where.pipeline)
    if where.since:
        conditions.append(table.c.created_at >= where.since)
    if where.until:
        conditions.append(table.c.created_at < where.until)
    ids = select(table.c.id).order_by(table.c.id.desc()).limit(where.limit)
    if conditions:
        ids = ids.where(and_(*conditions))
    found = records_json(conn, entity_type, table.c.id.in_(ids.scalar_subquery()))
    return sorted(found, key=lambda record: -record["id"])


def involves(employee: str) -> ColumnElement[bool]:
    """The calls an employee took part in: rung, answered, transferred to (or placed). The
    `employees` column holds a JSON list as JsonText wrote it (non-ASCII escaped: "jos\\u00e9"),
    searched for the id written the same way. SQLite's LIKE ignores ASCII case: callers that
    show calls to an agent filter them again exactly (web visible_calls)."""
    as_text = type_coerce(calls.c.employees, String)
    return or_(calls.c.answered_by == employee, as_text.contains(json.dumps(employee), autoescape=True))


def _calls(conn: Connection, where: CallFilter) -> list[Json]:
    query = select(calls).order_by(calls.c.started_at.desc(), calls.c.id.desc()).limit(where.limit)
    if where.phone:
        query = query.where(calls.c.number == where.phone)
    if where.employee:
        query = query.where(involves(where.employee))
    if where.line:
        query = query.where(calls.c.line == where.line)
    if where.since:
        query = query.where(calls.c.started_at >= where.since)
    if where.until:
        query = query.where(calls.c.started_at < where.until)
    return [call_json(row) for row in conn.execute(query).mappings()]


