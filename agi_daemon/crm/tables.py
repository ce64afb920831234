"""The embedded CRM's tables, as SQLAlchemy Core metadata.

Leads, contacts, companies and deals are the CRM records; `phones` is the phone index that
lookups go through (one row per number of a lead, contact or company); `calls` holds the call
log (R12) and `offers` the "create lead / contact" offers of the call window (R3).
The schema itself is created by the Alembic migrations in `migrations/versions`; these
definitions must stay equal to it (a test compares them).
"""
from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)


class UtcDateTime(TypeDecorator[datetime]):
    """A moment stored in UTC and always read back as an aware UTC datetime."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the CRM stores aware UTC moments")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # SQLite keeps no offset: what it holds is UTC
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class JsonText(TypeDecorator[Any]):
    """A JSON value kept as text, so the column reads the same on SQLite and PostgreSQL."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


# A stored linkedid: Asterisk's uniqueid (up to 149 characters, prefixed by asterisk.conf's
# systemname when set), namespaced as "<pbx_id>:<linkedid>" by a daemon naming its PBX.
LINKEDID = 192
LANE = 200  # an outbox lane: the external number, or "call:<linkedid>" for a call without one

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _record_columns(*, index_created_by_call: bool = True) -> list[Column[Any]]:
    """What every CRM record has: a name, a responsible employee, a source, and the call
    (Asterisk linkedid) that created it."""
    return [
        Column("id", Integer, primary_key=True),
        Column("name", String(255), nullable=False),
        Column("responsible", String(64), nullable=True),  # employee id
        Column("source", String(64), nullable=True),
        Column("created_by_call", String(LINKEDID), nullable=True, index=index_created_by_call),
        Column("created_at", UtcDateTime(), nullable=False),
    ]


contacts = Table("contacts", metadata, *_record_columns())

companies = Table("companies", metadata, *_record_columns())

deals = Table(
    "deals",
    metadata,
    *_record_columns(),
    Column("pipeline", String(64), nullable=False),
    Column("stage", String(64), nullable=False, server_default="NEW"),
    Column("contact_id", Integer, ForeignKey("contacts.id"), nullable=True, index=True),
    Column("company_id", Integer, ForeignKey("companies.id"), nullable=True, index=True),
)

leads = Table(
    "leads",
    metadata,
    # created_by_call is indexed by the unique constraint below, whose first column it is
    # (one index fewer to write per lead: migration 0008)
    *_record_columns(index_created_by_call=False),
    Column("status", String(16), nullable=False, server_default="NEW"),  # NEW | CONVERTED
    # the caller's number of the call that created the lead: makes creation idempotent
    # per (linkedid, phone), enforced by the unique constraint below
    Column("created_by_call_phone", String(32), nullable=True),
    Column("converted_contact_id", Integer, ForeignKey("contacts.id"), nullable=True),
    Column("converted_company_id", Integer, ForeignKey("companies.id"), nullable=True),
    Column("converted_deal_id", Integer, ForeignKey("deals.id"), nullable=True),
    UniqueConstraint("created_by_call", "created_by_call_phone"),
)

phones = Table(
    "phones",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("entity_type", String(16), nullable=False),  # lead | contact | company
    Column("entity_id", Integer, nullable=False),
    Column("e164", String(32), nullable=False),
    # the lookup's index: one seek from a number to its records, whatever the CRM's size
    Index(None, "e164", "entity_type", "entity_id"),
    Index(None, "entity_type", "entity_id"),
)

calls = Table(
    "calls",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("linkedid", String(LINKEDID), nullable=False, unique=True),
    Column("direction", String(16), nullable=False),
    Column("line", String(32), nullable=False),
    Column("number", String(32), nullable=False, index=True),
    Column("disposition", String(16), nullable=False),
    Column("answered_by", String(64), nullable=True),
    Column("employees", JsonText(), nullable=False),  # ["alice", "bob"]
    Column("started_at", UtcDateTime(), nullable=False, index=True),  # the call log, newest first
    Column("answered_at", UtcDateTime(), nullable=True),
    Column("ended_at", UtcDateTime(), nullable=False),
    Column("ring_seconds", Float, nullable=False),
    Column("talk_seconds", Float, nullable=False),
    Column("transfers", JsonText(), nullable=False),  # [{"from", "to", "kind"}]
    Column("entity_type", String(16), nullable=True),
    Column("entity_id", Integer, nullable=True),
    # True for a best guess (the call ended while AMI was down): any real report replaces it.
    Column("partial", Boolean, nullable=False, server_default=false()),
    Index(None, "entity_id", "entity_type"),  # a record's calls (its page)
)

offers = Table(
    "offers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("linkedid", String(LINKEDID), nullable=False, unique=True),
    Column("direction", String(16), nullable=False),
    Column("line", String(32), nullable=False),
    Column("phone", String(32), nullable=False, index=True),
    Column("employees", JsonText(), nullable=False),
    Column("status", String(16), nullable=False, server_default="open"),
    Column("created_at", UtcDateTime(), nullable=False),
)

# The web call window's logins: the employee id of the YAML file and its password hash
# (agi_daemon.crm.users says how it is made).
web_users = Table(
    "web_users",
    metadata,
    Column("employee", String(64), primary_key=True),
    Column("password_hash", String(255), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

# The outbox: every command a call asks of the CRM, committed before it is delivered (see
# agi_daemon.crm.outbox). status: pending | delivered | dead (a dead letter).
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key", String(320), nullable=False, unique=True),  # the command's idempotency key
    Column("lane", String(LANE), nullable=False),  # delivered in order within a lane
    Column("linkedid", String(LINKEDID), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("payload", JsonText(), nullable=False),
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("done_at", UtcDateTime(), nullable=True),
    Column("claimed_by", String(64), nullable=True),  # the daemon sending it to a remote CRM
    Column("claimed_until", UtcDateTime(), nullable=True),  # ... until its lease runs out
    Index(None, "status", "id"),
    # Only pending rows wait in a lane: a command stored as delivered at once (the embedded
    # CRM's direct path) writes no entry here (migration 0008). The statements that use it
    # say `status = 'pending'` as a constant, so the planners know they may (outbox_store).
    Index(None, "lane", "status", "id", sqlite_where=text("status = 'pending'"),
          postgresql_where=text("status = 'pending'")),
)

# What each call's commands created, joined, and their ids in a remote CRM.
call_ledger = Table(
    "call_ledger",
    metadata,
    Column("linkedid", String(LINKEDID), primary_key=True),
    Column("created", JsonText(), nullable=True),  # ["lead:12", "deal:3", ...]
    Column("joined", String(32), nullable=True),  # "lead:12"
    Column("remote_ids", JsonText(), nullable=True),  # {"lead:12": "4411"}
    Column("remote_call_id", String(128), nullable=True),
    Column("logged", String(16), nullable=True),  # the report a remote CRM's call log holds
    Column("updated_at", UtcDateTime(), nullable=False),
    # SQLite: the rows are stored in their key's B-tree, without a rowid table beside it:
    # a call's ledger row is one page written, not two (migration 0008)
    sqlite_with_rowid=False,
)

# Hangup reports kept while their call's CRM work runs (agi_daemon.crm.kept_reports): the
# next start logs a call the daemon stopped before logging. `pbx`: the daemon's pbx_id ("" when
# none), each daemon of a shared database logs its own calls; `owner`: the daemon ("host:pid")
# working on it, whose reports no other daemon takes while it runs.
kept_reports = Table(
    "kept_reports",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("pbx", String(32), nullable=False),
    Column("linkedid", String(LINKEDID), nullable=False),
    Column("owner", String(128), nullable=False),
    Column("kept_at", UtcDateTime(), nullable=False),  # when `owner` kept it, or took it over
    Column("report", JsonText(), nullable=False),  # core.outcome.HangupReport's fields
    Column("ended_at", UtcDateTime(), nullable=False),
    UniqueConstraint("pbx", "linkedid"),
)

RECORD_TABLES: dict[str, Table] = {
    "lead": leads,
    "contact": contacts,
    "company": companies,
    "deal": deals,
}
