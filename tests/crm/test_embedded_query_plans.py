"""Every statement on the call path finds its rows through an index, whatever the CRM's size.

The statements are the ones the CRM really runs (SQLite's trace, with their values), on a
populated database, with and without the planner's statistics (ANALYZE): a full `SCAN` of a
table, or an index search on a column with a handful of values (entity_type), would make
routing slower as the company grows.
"""
from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agi_daemon.core.model import CallRecord, CreateWith, CrmMode, Direction, Disposition, EntityRef, Offer
from agi_daemon.crm.embedded import EmbeddedCrm
from agi_daemon.crm.tables import metadata

CONTACTS = 3000
AT = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
_TABLE_SCAN = re.compile(r"^SCAN (\w+)(?: AS \w+)?$")  # no "USING (COVERING) INDEX"
_SEARCH = re.compile(r"^SEARCH (\w+)(?: AS \w+)? USING .*\((.*)\)$")
# Columns with a handful of values: an index search on these alone still reads a share of the
# table (every phone of every contact, say), which is a scan by another name.
_FEW_VALUES = {"entity_type", "status", "direction", "disposition", "partial", "stage", "pipeline"}


def whole_table_reads(detail: str, tables: set[str]) -> bool:
    """Whether this step of a query plan reads a table (or a large share of it) whole."""
    if (scan := _TABLE_SCAN.match(detail)) is not None:
        return scan[1] in tables
    if (search := _SEARCH.match(detail)) is not None:
        columns = {re.split(r"[=<>]", term.strip())[0] for term in search[2].split(" AND ")}
        return columns <= _FEW_VALUES
    return False


def populate(database: Path) -> None:
    """Thousands of contacts, companies, leads, calls and offers, written straight into the file."""
    with sqlite3.connect(database) as db:
        db.executemany("INSERT INTO contacts(id, name, created_at) VALUES (?, ?, '2025-01-01 00:00:00')",
                       ((n, f"Contact {n}") for n in range(1, CONTACTS + 1)))
        db.executemany("INSERT INTO companies(id, name, created_at) VALUES (?, ?, '2025-01-01 00:00:00')",
                       ((n, f"Company {n}") for n in range(1, 301)))
        db.executemany("INSERT INTO leads(id, name, status, created_by_call, created_by_call_phone, created_at)"
                       " VALUES (?, ?, 'NEW', ?, ?, '2025-01-01 00:00:00')",
                       ((n, f"Lead {n}", f"old.{n}", f"+3363{n:07d}") for n in range(1, 501)))
        db.executemany("INSERT INTO phones(entity_type, entity_id, e164) VALUES (?, ?, ?)",
                       [("contact", n, f"+3361{n:07d}") for n in range(1, CONTACTS + 1)]
                       + [("company", n, f"+3362{n:07d}") for n in range(1, 301)]
                       + [("lead", n, f"+3363{n:07d}") for n in range(1, 501)])
        db.executemany("INSERT INTO calls(linkedid, direction, line, number, disposition, employees, started_at,"
                       " ended_at, ring_seconds, talk_seconds, transfers) VALUES"
                       " (?, 'incoming', '+33184880000', ?, 'answered', '[]', '2025-01-01', '2025-01-01', 1, 2, '[]')",
                       ((f"old.{n}", f"+3361{n:07d}") for n in range(1, 2001)))
        db.executemany("INSERT INTO offers(linkedid, direction, line, phone, employees, created_at) VALUES"
                       " (?, 'incoming', '+33184880000', ?, '[]', '2025-01-01')",
                       ((f"offer.{n}", f"+3364{n:07d}") for n in range(1, 501)))


def call(linkedid: str, entity: EntityRef | None, *, partial: bool = False) -> CallRecord:
    return CallRecord(
        linkedid=linkedid, direction=Direction.INCOMING, line="+33184880000", number="+33699000001",
        disposition=Disposition.ANSWERED, answered_by="alice", employees=("alice",), started_at=AT,
        answered_at=AT, ended_at=AT, ring_seconds=1.0, talk_seconds=2.0, transfers=(), entity=entity,
        partial=partial,
    )


async def call_path_statements(database: Path, new_client, *, analyzed: bool) -> list[str]:
    """What the CRM runs for routing (lookup, records, offer) and the call log."""
    statements: list[str] = []
    async with EmbeddedCrm(f"sqlite:///{database}", trace=statements.append) as crm:
        populate(database)
        with sqlite3.connect(database) as db:
            if analyzed:
                db.execute("ANALYZE")
        statements.clear()
        await run_the_call_path(crm, new_client)
    return [s for s in statements if s.lstrip().split(None, 1)[0].upper() in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")]


async def run_the_call_path(crm: EmbeddedCrm, new_client) -> None:
    """Every statement of routing (lookup, records, offer) and of the call log, with values
    that find rows, find none, and conflict."""
    for phone in ("+33610001234", "+33620000042", "+33630000007", "+33699999999"):
        await crm.find_by_phone(phone)
    await crm.records_created_by_call("old.7")
    await crm.records_created_by_call("unknown.1")
    classic = await crm.create_records(new_client("+33699000001", "new.1"))
    await crm.create_records(new_client("+33699000001", "new.1"))  # the same call again
    await crm.create_records(new_client("+33699000002", "new.2", mode=CrmMode.SIMPLE))
    await crm.create_records(new_client("+33699000003", "new.3", mode=CrmMode.SIMPLE,
                                        create_with=CreateWith.COMPANY))
    await crm.record_offer(Offer("offer.new", Direction.INCOMING, "+33184880000", "+33699000004",
                                 ("alice",), AT))
    await crm.record_offer(Offer("offer.new", Direction.INCOMING, "+33184880000", "+33699000004",
                                 ("alice",), AT))
    await crm.log_call(call("new.1", classic.lead, partial=True), keep_existing=True)
    await crm.log_call(call("new.1", classic.lead), keep_existing=True)
    await crm.log_call(call("new.1", classic.lead))
    await crm.log_call(call("old.9", None))
    await crm.set_responsible((classic.lead,), "bob")


@pytest.mark.parametrize("with_statistics", [False, True], ids=["fresh", "analyzed"])
async def test_call_path_statements_never_scan_a_whole_table(tmp_path: Path, new_client, with_statistics: bool) -> None:
    database = tmp_path / "crm.sqlite3"

    statements = await call_path_statements(database, new_client, analyzed=with_statistics)

    tables = set(metadata.tables)
    scans = []
    with sqlite3.connect(database) as db:
        for statement in statements:
            for *_, detail in db.execute(f"EXPLAIN QUERY PLAN {statement}"):
                if whole_table_reads(detail, tables):
                    scans.append(f"{detail}  <-  {statement}")
    kinds = {s.split(None, 1)[0].upper() for s in statements}
    assert {"SELECT", "INSERT", "UPDATE"} <= kinds and len(statements) >= 20
    assert scans == []


async def test_the_pages_opened_most_never_scan_a_whole_table(tmp_path: Path) -> None:
    """The call log (an admin's, an agent's), a record's page with its calls, the admin page's
    calls per hour and the deals of a number: opened all day, on a CRM that keeps growing."""
    from agi_daemon.core.crm_queries import CallFilter, RecordFilter
    from agi_daemon.core.model import EntityType
    from agi_daemon.crm.pages import CrmPages

    database = tmp_path / "crm.sqlite3"
    statements: list[str] = []
    async with EmbeddedCrm(f"sqlite:///{database}", trace=statements.append) as crm:
        populate(database)
        statements.clear()
        pages = CrmPages(crm)
        await pages.calls(CallFilter())
        await pages.calls(CallFilter(employee="alice"))
        await pages.entity(EntityRef(EntityType.CONTACT, 7))
        await pages.calls_per_hour(AT)
        await pages.records(EntityType.DEAL, RecordFilter(phone="+33610000007"))
    selects = [s for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH"))]
    scans = []
    with sqlite3.connect(database) as db:
        for statement in selects:
            for *_, detail in db.execute(f"EXPLAIN QUERY PLAN {statement}"):
                if whole_table_reads(detail, {"calls", "deals"}):
                    scans.append(f"{detail}  <-  {statement}")
    assert len(selects) >= 5 and scans == []


# ---------------------------------------------------------------------------- PostgreSQL

def populate_postgresql(url: str) -> None:
    """The rows of `populate`, on PostgreSQL (ids from the tables' sequences: 1, 2, ...), with as
    many companies and leads as contacts: PostgreSQL rightly reads a table of a few pages whole,
    so every table must be large enough for a whole read to be the mistake it is at scale."""
    with connect(url) as db, db.cursor() as cursor:
        cursor.executemany("INSERT INTO contacts(name, created_at) VALUES (%s, '2025-01-01 00:00:00+00')",
                           [(f"Contact {n}",) for n in range(1, CONTACTS + 1)])
        cursor.executemany("INSERT INTO companies(name, created_at) VALUES (%s, '2025-01-01 00:00:00+00')",
                           [(f"Company {n}",) for n in range(1, CONTACTS + 1)])
        cursor.executemany("INSERT INTO leads(name, status, created_by_call, created_by_call_phone, created_at)"
                           " VALUES (%s, 'NEW', %s, %s, '2025-01-01 00:00:00+00')",
                           [(f"Lead {n}", f"old.{n}", f"+3363{n:07d}") for n in range(1, CONTACTS + 1)])
        cursor.executemany("INSERT INTO phones(entity_type, entity_id, e164) VALUES (%s, %s, %s)",
                           [("contact", n, f"+3361{n:07d}") for n in range(1, CONTACTS + 1)]
                           + [("company", n, f"+3362{n:07d}") for n in range(1, CONTACTS + 1)]
                           + [("lead", n, f"+3363{n:07d}") for n in range(1, CONTACTS + 1)])
        cursor.executemany("INSERT INTO calls(linkedid, direction, line, number, disposition, employees, started_at,"
                           " ended_at, ring_seconds, talk_seconds, transfers) VALUES (%s, 'incoming', '+33184880000',"
                           " %s, 'answered', '[]', '2025-01-01 00:00:00+00', '2025-01-01 00:00:00+00', 1, 2, '[]')",
                           [(f"old.{n}", f"+3361{n:07d}") for n in range(1, CONTACTS + 1)])
        cursor.executemany("INSERT INTO offers(linkedid, direction, line, phone, employees, created_at) VALUES"
                           " (%s, 'incoming', '+33184880000', %s, '[]', '2025-01-01 00:00:00+00')",
                           [(f"offer.{n}", f"+3364{n:07d}") for n in range(1, CONTACTS + 1)])


def connect(url: str):
    import psycopg
    from sqlalchemy import make_url

    parsed = make_url(url)
    return psycopg.connect(host=parsed.host, port=parsed.port, user=parsed.username, dbname=parsed.database)


_CONDITION_COLUMN = re.compile(r"(?:\w+\.)?(\w+)\)*(?:::[a-z ]+)?\)*\s*(?:=|<>|<=|>=|<|>)")
_INDEX_NODES = {"Index Scan", "Index Only Scan", "Bitmap Index Scan"}


def postgresql_whole_table_reads(plan: dict, tables: set[str]) -> list[str]:
    """The steps of a PostgreSQL plan (EXPLAIN FORMAT JSON) that read a table, or a large share
    of it, whole: a sequential scan, or an index walked without a condition (for its order)
    or with conditions on few-valued columns only."""
    found = []
    node = plan["Node Type"]
    if node == "Seq Scan" and plan.get("Relation Name") in tables:
        found.append(f"Seq Scan on {plan['Relation Name']}")
    if node in _INDEX_NODES:
        columns = set(_CONDITION_COLUMN.findall(plan.get("Index Cond", "")))
        if not columns or columns <= _FEW_VALUES:
            found.append(f"{node} using {plan['Index Name']} ({plan.get('Index Cond', 'no condition')})")
    for child in plan.get("Plans", []):
        found += postgresql_whole_table_reads(child, tables)
    return found


@pytest.mark.parametrize("with_statistics", [False, True], ids=["fresh", "analyzed"])
async def test_call_path_statements_never_scan_a_whole_table_on_postgresql(postgresql, new_client,
                                                                           with_statistics: bool) -> None:
    url = postgresql.create_database()
    statements: list[str] = []
    async with EmbeddedCrm(url, trace=statements.append) as crm:
        populate_postgresql(url)
        with connect(url) as db:
            db.autocommit = True
            db.execute("ANALYZE" if with_statistics else "SELECT 1")
        statements.clear()
        await run_the_call_path(crm, new_client)

    tables = set(metadata.tables)
    scans = []
    with connect(url) as db:
        for statement in statements:
            if statement.lstrip().split(None, 1)[0].upper() not in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH"):
                continue
            ((plan,),) = db.execute(f"EXPLAIN (FORMAT JSON) {statement}").fetchall()
            scans += [f"{step}  <-  {statement}" for step in postgresql_whole_table_reads(plan[0]["Plan"], tables)]
            db.rollback()
    kinds = {s.lstrip().split(None, 1)[0].upper() for s in statements}
    assert {"SELECT", "INSERT", "UPDATE"} <= kinds and len(statements) >= 20
    assert scans == []
