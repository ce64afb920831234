"""The embedded CRM's records, calls and offers as the JSON objects of `crm list --json`.

The shapes are the command line contract (README, "Command line"):

- records: `id`, `type`, `name`, `phones`, `responsible`, `source`, `status`,
  `created_by_call` (the Asterisk linkedid; with `created_by_pbx`, the daemon.pbx_id of the
  PBX that call was on, when that daemon names its PBX); leads add `converted_to` (refs such as "deal:4"); deals add `pipeline`,
  `stage`, `contact` and `company` (refs or null). A lead's status is NEW or CONVERTED, a
  deal's status is its stage, contacts and companies have none (null). A deal's phones are
  those of its contact and company.
- calls: `id`, `direction`, `line`, `number`, `disposition`, `answered_by`, `ring_seconds`,
  `talk_seconds`, `transfers`, `entity`, `linkedid`, `started_at`, `answered_at`, `ended_at`,
  `employees`, `partial` (true for a best guess: the call ended while AMI was down); `pbx`
  (the daemon.pbx_id of the call's PBX) when that daemon names its PBX.
- offers: `id`, `linkedid` (and `pbx`, as calls), `direction`, `line`, `phone`, `employees`, `status`,
  `created_at`.

Moments are ISO-8601 in UTC ("2024-05-01T09:30:00+00:00"); every list is ordered by id.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, or_, select

from ..core.commands import split_linkedid
from ..core.model import EntityType
from .tables import RECORD_TABLES, calls, deals, offers, phones

Json = dict[str, Any]

LIST_KINDS: dict[str, EntityType | str] = {
    "leads": EntityType.LEAD,
    "contacts": EntityType.CONTACT,
    "companies": EntityType.COMPANY,
    "deals": EntityType.DEAL,
    "calls": "calls",
    "offers": "offers",
}


def list_json(conn: Connection, kind: str, phone: str | None = None) -> list[Json]:
    """Every record of one kind ("leads", "contacts", "companies", "deals", "calls",
    "offers"), or only those with this E.164 number (records through the phone index, calls
    by their number, offers by their phone)."""
    if kind not in LIST_KINDS:
        raise ValueError(f"unknown kind {kind!r}: expected one of {', '.join(LIST_KINDS)}")
    if kind == "calls":
        query = select(calls).order_by(calls.c.id)
        if phone is not None:
            query = query.where(calls.c.number == phone)
        return [call_json(row) for row in conn.execute(query).mappings()]
    if kind == "offers":
        query = select(offers).order_by(offers.c.id)
        if phone is not None:
            query = query.where(offers.c.phone == phone)
        return [offer_json(row) for row in conn.execute(query).mappings()]
    entity_type = EntityType(LIST_KINDS[kind])
    where = None if phone is None else _has_phone(entity_type, phone)
    return records_json(conn, entity_type, where)


def records_json(
    conn: Connection, entity_type: EntityType, where: ColumnElement[bool] | None = None
) -> list[Json]:
    """The records of one type matching `where` (all when None), as contract objects."""
    table = RECORD_TABLES[entity_type.value]
    query = select(table).order_by(table.c.id)
    if where is not None:
        query = query.where(where)
    rows = conn.execute(query).mappings().all()
    if entity_type is EntityType.DEAL:
        selected = select(deals.c.contact_id)
        contact_phones = _phones(conn, EntityType.CONTACT, _restrict(selected, where))
        selected = select(deals.c.company_id)
        company_phones = _phones(conn, EntityType.COMPANY, _restrict(selected, where))
        return [
            _deal_json(row, contact_phones[row["contact_id"]] + company_phones[row["company_id"]])
            for row in rows
        ]
    numbers = _phones(conn, entity_type, _restrict(select(table.c.id), where))
    return [_record_json(entity_type, row, numbers[row["id"]]) for row in rows]


def call_json(row: Any) -> Json:
    entity = None if row["entity_type"] is None else f"{row['entity_type']}:{row['entity_id']}"
    return {
        "id": row["id"],
        "direction": row["direction"],
        "line": row["line"],
        "number": row["number"],
        "disposition": row["disposition"],
        "answered_by": row["answered_by"],
        "ring_seconds": row["ring_seconds"],
        "talk_seconds": row["talk_seconds"],
        "transfers": row["transfers"],
        "entity": entity,
        **_call_of(row["linkedid"]),
        "started_at": _iso(row["started_at"]),
        "answered_at": _iso(row["answered_at"]),
        "ended_at": _iso(row["ended_at"]),
        "employees": row["employees"],
        "partial": bool(row["partial"]),
    }


def offer_json(row: Any) -> Json:
    return {
        "id": row["id"],
        **_call_of(row["linkedid"]),
        "direction": row["direction"],
        "line": row["line"],
        "phone": row["phone"],
        "employees": row["employees"],
        "status": row["status"],
        "created_at": _iso(row["created_at"]),
    }


def _call_of(stored: str) -> Json:
    """A stored linkedid as the contract shows it: the Asterisk linkedid, plus `pbx` (the
    daemon.pbx_id of the call's PBX) when the daemon that stored it names its PBX."""
    pbx, linkedid = split_linkedid(stored)
    return {"linkedid": linkedid} if pbx is None else {"linkedid": linkedid, "pbx": pbx}


def _created_by(stored: str | None) -> Json:
    pbx, linkedid = (None, None) if stored is None else split_linkedid(stored)
    return {"created_by_call": linkedid} if pbx is None else {"created_by_call": linkedid, "created_by_pbx": pbx}


def _has_phone(entity_type: EntityType, phone: str) -> ColumnElement[bool]:
    """The records of this type with this number in the phone index; for deals, the deals
    whose contact or company has it."""

    def owners(owner_type: EntityType) -> Select[tuple[int]]:
        return select(phones.c.entity_id).where(
            phones.c.entity_type == owner_type.value, phones.c.e164 == phone
        )

    if entity_type is EntityType.DEAL:
        return or_(
            deals.c.contact_id.in_(owners(EntityType.CONTACT)),
            deals.c.company_id.in_(owners(EntityType.COMPANY)),
        )
    return RECORD_TABLES[entity_type.value].c.id.in_(owners(entity_type))


def _restrict(query: Select[Any], where: ColumnElement[bool] | None) -> Select[Any]:
    return query if where is None else query.where(where)


def _phones(
    conn: Connection, owner_type: EntityType, owner_ids: Select[Any]
) -> defaultdict[int | None, list[str]]:
    """The numbers of the records of `owner_type` whose id `owner_ids` selects, by record id,
    in the order they were added."""
    query = (
        select(phones.c.entity_id, phones.c.e164)
        .where(phones.c.entity_type == owner_type.value, phones.c.entity_id.in_(owner_ids))
        .order_by(phones.c.id)
    )
    numbers: defaultdict[int | None, list[str]] = defaultdict(list)
    for entity_id, e164 in conn.execute(query):
        numbers[entity_id].append(e164)
    return numbers


def _record_json(entity_type: EntityType, row: Any, numbers: list[str]) -> Json:
    record = {
        "id": row["id"],
        "type": entity_type.value,
        "name": row["name"],
        "phones": numbers,
        "responsible": row["responsible"],
        "source": row["source"],
        "status": row["status"] if entity_type is EntityType.LEAD else None,
        **_created_by(row["created_by_call"]),
    }
    if entity_type is EntityType.LEAD:
        record["converted_to"] = [
            f"{kind}:{row[column]}"
            for kind, column in (
                ("deal", "converted_deal_id"),
                ("contact", "converted_contact_id"),
                ("company", "converted_company_id"),
            )
            if row[column] is not None
        ]
    return record


def _deal_json(row: Any, numbers: list[str]) -> Json:
    return {
        "id": row["id"],
        "type": EntityType.DEAL.value,
        "name": row["name"],
        "phones": numbers,
        "responsible": row["responsible"],
        "source": row["source"],
        "status": row["stage"],
        **_created_by(row["created_by_call"]),
        "pipeline": row["pipeline"],
        "stage": row["stage"],
        "contact": None if row["contact_id"] is None else f"contact:{row['contact_id']}",
        "company": None if row["company_id"] is None else f"company:{row['company_id']}",
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()

