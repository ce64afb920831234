"""Schema migrations of the embedded CRM, run from code (there is no alembic.ini)."""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, create_engine, exc, inspect
from sqlalchemy.pool import NullPool

from ...core.ports import CrmError
from ..database import WRITE, serialize_migrations, server_connect_args, tune_sqlite
from ..tables import metadata


class SchemaMismatch(CrmError):
    """The database's schema is not this version's: `revision` is the database's (None: an
    empty database), `head` this version's latest."""

    def __init__(self, message: str, revision: str | None, head: str) -> None:
        super().__init__(message)
        self.revision = revision
        self.head = head


class SchemaTooNew(SchemaMismatch):
    """The database was migrated by a newer version of agi-daemon (a revision this one does not
    have): nothing here may touch it, neither to migrate it nor to use it."""

    def __init__(self, revision: str, head: str) -> None:
        super().__init__(f"the CRM database's schema is at revision {revision}, newer than this version of "
                         f"agi-daemon knows (its latest is {head}): install the version that migrated it, "
                         "or a later one", revision, head)


class SchemaOutOfDate(SchemaMismatch):
    """The database's schema is older than this version's, and the caller only reads: it is
    left as it is (an older daemon may still be using it)."""

    def __init__(self, revision: str | None, head: str) -> None:
        state = (f"the CRM database's schema is at revision {revision}, older than this version of agi-daemon's "
                 f"({head})" if revision else "the CRM database has no schema yet")
        super().__init__(f"{state}: run `agi-daemon db upgrade` (or start the daemon) first; nothing was changed",
                         revision, head)


def alembic_config() -> Config:
    """Alembic's configuration, pointing at this package's scripts."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.set_main_option("path_separator", "os")
    return config


def upgrade_to_head(url: URL, busy_timeout_ms: int = 5000) -> tuple[str | None, str | None]:
    """Bring the CRM database at `url` (a `database.database_url`) to the latest schema.
    Blocking: run it in a worker thread.

    One transaction (on SQLite it takes the write lock first, on PostgreSQL an advisory
    lock), so two daemons starting on the same database migrate one after the other; a
    database already at head is untouched. An empty database gets this version's tables at
    once, stamped at head (Alembic's way to build a database from scratch: quicker than
    replaying every migration, which the test suite proves lead to the same schema).
    Returns the schema's revision before and after (None: an empty database).
    """
    sqlite = url.get_backend_name() == "sqlite"
    # on a server, waiting for another daemon's migration as long as it takes (no lock
    # timeout); a daemon that lost power mid-migration is dropped within a minute, its lock too
    connect_args = {} if sqlite else server_connect_args(lock_timeout_ms=None)
    engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
    tune_sqlite(engine, busy_timeout_ms)
    try:
        with engine.execution_options(**WRITE).connect() as connection, _references_checked_at_the_end(connection):
            serialize_migrations(connection)
            before = MigrationContext.configure(connection).get_current_revision()
            config = alembic_config()
            _known(config, before)
            config.attributes["connection"] = connection
            if before is None and not inspect(connection).get_table_names():
                metadata.create_all(connection)
                command.stamp(config, "head")
            else:
                command.upgrade(config, "head")
            after = MigrationContext.configure(connection).get_current_revision()
            connection.info["migrated"] = before is not None and after != before
            return before, after
    finally:
        engine.dispose()


def check_at_head(url: URL, busy_timeout_ms: int = 5000) -> str:
    """The revision of the CRM database at `url` when it is this version's latest, changing
    nothing (for the commands that only read); SchemaOutOfDate when it is older (or empty),
    SchemaTooNew when a newer version migrated it. Blocking: run it in a worker thread."""
    sqlite = url.get_backend_name() == "sqlite"  # (no tuning: the file is only read, as it is)
    connect_args = {"timeout": busy_timeout_ms / 1000} if sqlite else server_connect_args(lock_timeout_ms=None)
    engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
    try:
        with engine.connect() as connection, connection.begin():
            revision = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    head = _known(alembic_config(), revision)
    if revision != head:
        raise SchemaOutOfDate(revision, head)
    return head


def _known(config: Config, revision: str | None) -> str:
    """This version's latest revision, once `revision` (the database's) is known to be one of
    this version's: SchemaTooNew when it is not (Alembic could not migrate from it)."""
    scripts = ScriptDirectory.from_config(config)
    head = scripts.get_current_head()
    assert head is not None  # the migrations form one line
    if revision is not None and revision not in {script.revision for script in scripts.walk_revisions()}:
        raise SchemaTooNew(revision, head)
    return head


@contextmanager
def _references_checked_at_the_end(connection: Connection) -> Iterator[None]:
    """The migration's transaction. On SQLite, a migration that changes a column rebuilds its
    table (copy, drop, rename: Alembic's batch mode), and dropping a table that other rows
    reference (a deal's contact, a converted lead's deal) fails while foreign keys are
    enforced. They are not enforced during the migration (the pragma only takes effect outside
    a transaction), and checked once at its end: a broken reference rolls it all back."""
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        connection.connection.dbapi_connection.execute("PRAGMA foreign_keys = OFF")  # type: ignore[union-attr]
    with connection.begin():
        yield
        if sqlite and connection.info.pop("migrated", False):
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise exc.IntegrityError("PRAGMA foreign_key_check", None, sqlite3.IntegrityError(
                    f"the migrated database has rows whose references are broken (table, row, referred table): "
                    f"{[tuple(row[:3]) for row in broken[:5]]}"))
