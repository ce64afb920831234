"""Schema migrations of the embedded CRM, run from code (there is no alembic.ini)."""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import URL, Connection, create_engine, exc, inspect
from sqlalchemy.pool import NullPool

from ..database import CONNECT_TIMEOUT_S, WRITE, serialize_migrations, tune_sqlite
from ..tables import metadata


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
    connect_args = {} if sqlite else {"connect_timeout": CONNECT_TIMEOUT_S}
    engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
    tune_sqlite(engine, busy_timeout_ms)
    try:
        with engine.execution_options(**WRITE).connect() as connection, _references_checked_at_the_end(connection):
            serialize_migrations(connection)
            before = MigrationContext.configure(connection).get_current_revision()
            config = alembic_config()
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
