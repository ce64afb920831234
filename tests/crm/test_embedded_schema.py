"""Opening the embedded CRM: database URLs, migrations, SQLite tuning, error translation."""
from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from agi_daemon.core.ports import CrmRejected, CrmUnavailable
from agi_daemon.crm.database import database_url
from tests.fakes.database import migrate_to, migration_head
from agi_daemon.crm.embedded import EmbeddedCrm
from agi_daemon.crm.tables import metadata

pytestmark = pytest.mark.databases("sqlite", "postgresql")


def sqlite_pragma(path: Path, pragma: str) -> object:
    with sqlite3.connect(path) as connection:
        return connection.execute(f"PRAGMA {pragma}").fetchone()[0]


async def test_open_twice_and_reopen_migrates_once_and_keeps_records(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/crm.sqlite3"
    crm = EmbeddedCrm(url)
    await crm.open()
    await crm.open()
    await crm.add_record("contact", "Jean", "+33612000001", None)
    await crm.close()

    async with EmbeddedCrm(url) as reopened:
        assert len(await reopened.list_records("contacts")) == 1

    with sqlite3.connect(tmp_path / "crm.sqlite3") as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (migration_head(),)
        ]


@pytest.mark.databases("sqlite")
async def test_opened_sqlite_database_is_in_wal_mode(crm: EmbeddedCrm, tmp_path: Path) -> None:
    assert sqlite_pragma(tmp_path / "crm.sqlite3", "journal_mode") == "wal"


async def test_every_migration_replayed_on_an_empty_database_gives_the_table_definitions(database_url: str) -> None:
    """A new database is built from the table definitions and stamped (quicker); an existing
    one is upgraded migration by migration: both must end with the same schema."""
    migrate_to(database_url, "head")
    engine = create_engine(EmbeddedCrm(database_url).url)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()

    assert differences == []


async def test_a_new_database_is_built_at_head_and_has_the_table_definitions(crm: EmbeddedCrm) -> None:
    engine = create_engine(crm.url)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
            revision = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()

    assert differences == [] and revision == migration_head()


def index_definitions(url: str) -> dict[str, str]:
    """Each index of the database, by name: the statement that makes it."""
    engine = create_engine(EmbeddedCrm(url).url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                rows = connection.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index'")
            else:
                rows = connection.exec_driver_sql(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()")
            return {name: sql or "" for name, sql in rows}
    finally:
        engine.dispose()


@pytest.mark.parametrize("made", ["built", "migrated"])
async def test_new_and_migrated_databases_keep_lane_entries_for_pending_commands_only(
        database_url: str, made: str) -> None:
    """Migration 0008: a command stored as delivered writes no entry in the lanes' index, and
    a lead's creating call is indexed once (by its unique constraint), not twice. Alembic's
    comparison of the schemas does not look at an index's condition: this test does."""
    if made == "built":
        async with EmbeddedCrm(database_url):
            pass
    else:
        migrate_to(database_url, "head")

    indexes = index_definitions(database_url)

    assert "ix_leads_created_by_call" not in indexes
    lanes = indexes["ix_outbox_lane_status_id"]
    assert "WHERE" in lanes.upper() and "'pending'" in lanes


@pytest.mark.databases("sqlite")
@pytest.mark.parametrize("made", ["built", "migrated"])
async def test_new_and_migrated_sqlite_databases_keep_call_ledgers_without_rowid(tmp_path: Path, made: str) -> None:
    url = f"sqlite:///{tmp_path}/crm.sqlite3"
    if made == "built":
        async with EmbeddedCrm(url):
            pass
    else:
        migrate_to(url, "0007_longer_linkedids")
        with sqlite3.connect(tmp_path / "crm.sqlite3") as db:
            db.execute("INSERT INTO call_ledger (linkedid, created, updated_at) VALUES ('1700.1', '[\"lead:1\"]', '2025-01-01')")
        migrate_to(url, "head")

    with sqlite3.connect(tmp_path / "crm.sqlite3") as db:
        (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'call_ledger'").fetchone()
        rows = db.execute("SELECT linkedid, created FROM call_ledger").fetchall()
    assert "WITHOUT ROWID" in sql.upper()
    assert rows == ([] if made == "built" else [("1700.1", '["lead:1"]')])


async def test_relative_sqlite_path_is_created_under_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    async with EmbeddedCrm("sqlite:///var/crm.sqlite3") as crm:
        assert crm.url.database == str(tmp_path / "var" / "crm.sqlite3")

    assert (tmp_path / "var" / "crm.sqlite3").is_file()


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("sqlite:////srv/crm.sqlite3", "sqlite+pysqlite:////srv/crm.sqlite3"),
        ("sqlite+aiosqlite:////srv/crm.sqlite3", "sqlite+pysqlite:////srv/crm.sqlite3"),
        ("postgresql://crm@db/crm", "postgresql+psycopg://crm@db/crm"),
        ("postgresql+asyncpg://crm@db/crm", "postgresql+psycopg://crm@db/crm"),
    ],
)
def test_database_url_gets_the_sync_driver(given: str, used: str) -> None:
    assert database_url(given).render_as_string(hide_password=False) == used


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "mysql://crm@db/crm"])
def test_database_url_without_file_or_unsupported_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        EmbeddedCrm(url)


async def test_locked_database_is_reported_unavailable(tmp_path: Path, new_client) -> None:
    url = f"sqlite:///{tmp_path}/crm.sqlite3"
    async with EmbeddedCrm(url, busy_timeout_ms=50) as crm:
        blocker = sqlite3.connect(tmp_path / "crm.sqlite3", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(CrmUnavailable, match="locked"):
                await crm.create_records(new_client("+33612000001", "17000.1"))
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()


async def test_record_the_database_refuses_is_rejected(crm: EmbeddedCrm, new_client) -> None:
    nameless = replace(new_client("+33612000001", "17000.1"), name=None)

    with pytest.raises(CrmRejected):
        await crm.create_records(nameless)

    assert await crm.list_records("leads") == []


async def test_crm_used_before_open_is_unavailable(database_url: str) -> None:
    with pytest.raises(CrmUnavailable):
        await EmbeddedCrm(database_url).find_by_phone("+33612000001")
