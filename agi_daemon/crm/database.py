"""Where the embedded CRM keeps its records: database URLs and the SQLite tuning.

The admin writes one URL (`sqlite:///var/crm.sqlite3` or `postgresql://user@host/crm`). The
daemon talks to it through a sync driver (pysqlite, or psycopg 3), one transaction at a time
in a worker thread of the CRM's own pool, and runs the schema migrations the same way.
"""
from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection, Engine, event, exc, make_url, text

from ..core.model import embedded_database

# Execution option of the connections that write: on SQLite their transaction takes the
# write lock at BEGIN (BEGIN IMMEDIATE), so a transaction that reads then writes waits for
# the other writers (busy_timeout) instead of failing with "database is locked".
WRITE = {"crm_write": True}


def database_url(url: str) -> URL:
    """The URL the daemon uses: `sqlite:///var/crm.sqlite3` becomes
    `sqlite+pysqlite:////abs/path/var/crm.sqlite3` (relative paths are taken from the current
    directory), `postgresql://…` becomes `postgresql+psycopg://…`. A driver named in the URL
    is replaced by these two (older configurations may name an async one)."""
    backend = embedded_database(url)  # ValueError naming an unknown scheme
    parsed = make_url(url)
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
            raise ValueError(f"the embedded CRM needs a database file, not {url!r}")
        if not database.startswith("file:"):
            database = str(Path(database).expanduser().absolute())
        return parsed.set(drivername="sqlite+pysqlite", database=database)
    return parsed.set(drivername="postgresql+psycopg")


# How long connecting to a database server may take before the operation fails (CrmUnavailable):
# a server that is down refuses at once; one that is unreachable must not hold a worker thread.
CONNECT_TIMEOUT_S = 3


def pool_options(url: URL, workers: int, busy_timeout_ms: int) -> dict[str, Any]:
    """The connection pool of the CRM's engine, for `workers` reader threads and the writer
    thread: one connection each, never more (the admin sizes PostgreSQL's max_connections
    by it). On a database server every connection is checked before use (pool_pre_ping), so
    after the server restarts the stale connections are replaced instead of failing a call;
    a statement waits for another daemon's lock at most `busy_timeout_ms` (lock_timeout, as
    SQLite's busy timeout), and TCP keepalives find a server gone silent within seconds.

    Transactions are READ COMMITTED whatever the server's default: look before create (a new
    number's lead) reads, after the number's lock, what another daemon committed meanwhile;
    a REPEATABLE READ snapshot taken before the lock would not see it, and the number would
    get two leads. The server drops a daemon gone silent in a transaction (power lost,
    network cut: no FIN ever comes) after IDLE_IN_TRANSACTION_S, with its locks, and its
    keepalives find it within seconds; without that the server keeps such a session, and
    the number locks it holds, about two hours, and the other daemons' writes of that
    number wait behind it."""
    options: dict[str, Any] = {"pool_size": workers + 1, "max_overflow": 0, "pool_timeout": CONNECT_TIMEOUT_S}
    if url.get_backend_name() == "postgresql":
        options.update(pool_pre_ping=True, isolation_level="READ COMMITTED",
                       connect_args=server_connect_args(lock_timeout_ms=int(busy_timeout_ms)))
    return options


def server_connect_args(*, lock_timeout_ms: int | None) -> dict[str, Any]:
    """How every connection to a PostgreSQL server is opened, the migrations' too (see
    pool_options): bounded connect, TCP keepalives both ways, a session gone silent in a
    transaction dropped after IDLE_IN_TRANSACTION_S (with the locks it holds), and a statement
    waiting at most `lock_timeout_ms` for a lock (None: as long as it takes)."""
    server: dict[str, int] = {} if lock_timeout_ms is None else {"lock_timeout": lock_timeout_ms}
    server.update({"idle_in_transaction_session_timeout": IDLE_IN_TRANSACTION_S * 1000,
                   "tcp_keepalives_idle": 5, "tcp_keepalives_interval": 2, "tcp_keepalives_count": 3})
    return {
        "connect_timeout": CONNECT_TIMEOUT_S,
        "options": " ".join(f"-c {name}={value}" for name, value in server.items()),
        "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3,
    }


# How long the database server keeps a daemon's transaction that sends nothing (the daemon's
# own transactions take milliseconds; an import's batch, seconds).
IDLE_IN_TRANSACTION_S = 60


# The PostgreSQL advisory lock the schema migrations hold (any constant shared by every daemon).
MIGRATION_LOCK = 0x61676964  # "agid"


def serialize_migrations(connection: Connection) -> None:
    """Make the migrations of daemons starting together on one database server run one after
    the other: the first migrates, the next find the schema at head. (SQLite: the migrating
    transaction's BEGIN IMMEDIATE does it already.)"""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})


def sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL (so its directory can be created), else None."""
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database.startswith("file:"):
        return None
    return Path(database)


# The event loop's reader interrupts a statement that runs longer than this (checked every
# READ_CHECK_STEPS SQLite VM steps): a point read of the call path takes tens of microseconds;
# one past this budget (a cold disk, a query plan gone wrong) goes to a worker thread instead
# of holding the loop.
READ_BUDGET_S = 0.001
READ_CHECK_STEPS = 1000
# The page cache of each connection, in KiB: the hot part of the phone index of a large CRM.
CACHE_KIB = 16_384
# The event loop reader's page cache, in KiB: small on purpose. SQLite empties a connection's
# whole cache at its first read after another connection wrote, and emptying 16 MiB of pages
# cost more than the lookup itself (a phone lookup at 1,000,000 contacts: 14 µs alone, 34 µs
# right after a write, 19 µs with this cache). The operating system's page cache keeps the
# file's pages either way; this one keeps the top of the indexes between writes.
READER_CACHE_KIB = 256


def tune_sqlite(
    engine: Engine, busy_timeout_ms: int, *, trace: Callable[[str], None] | None = None
) -> None:
    """On SQLite: WAL journal (readers never wait for the writer), a busy timeout, foreign
    keys, and SQLAlchemy in charge of BEGIN so that writers use BEGIN IMMEDIATE; `trace`
    receives every statement run. Does nothing on other databases."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver emits no BEGIN; _on_begin does
        if trace is not None:
            dbapi_connection.set_trace_callback(trace)
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        begin = "BEGIN IMMEDIATE" if connection.get_execution_options().get("crm_write", False) else "BEGIN"
        try:  # straight on the driver: SQLAlchemy's execution path cost more than the BEGIN itself
            connection.connection.dbapi_connection.execute(begin)
        except sqlite3.Error as error:  # raised as exec_driver_sql would (a locked database, say);
            # unlike it, a connection that died is not marked invalid here: SQLite's are files,
            # and the writer drops its kept connection after any failed transaction anyway
            raise exc.DBAPIError.instance(begin, None, error, sqlite3.Error) from error


def trace_server(engine: Engine, trace: Callable[[str], None] | None) -> None:
    """On PostgreSQL: `trace` receives every statement run, with its values merged in as
    psycopg would send them (for debugging, and for the test of the query plans). SQLite's
    own trace callback does it there (tune_sqlite)."""
    if trace is None or engine.dialect.name != "postgresql":
        return
    from psycopg import ClientCursor

    @event.listens_for(engine, "before_cursor_execute")
    def _on_execute(conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, executemany: bool) -> None:
        batches = parameters if executemany else [parameters]
        with ClientCursor(conn.connection.driver_connection) as cursor:
            for values in batches:
                trace(cursor.mogrify(statement, values))


class LoopReader:
    """A read-only connection for the call path's point reads on the event loop itself. It
    never waits for a lock (busy timeout 0) and interrupts any statement that runs past
    READ_BUDGET_S; either way `first` raises sqlite3.Error and the caller reads in a worker
    thread instead."""

    def __init__(self, database: Path, *, trace: Callable[[str], None] | None = None) -> None:
        self._deadline = 0.0
        connection = sqlite3.connect(database, isolation_level=None, cached_statements=32)
        if trace is not None:
            connection.set_trace_callback(trace)
        connection.execute("PRAGMA busy_timeout = 0")
        connection.execute("PRAGMA query_only = ON")
        connection.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB}")
        connection.set_progress_handler(self._over_budget, READ_CHECK_STEPS)
        self._connection = connection

    def first(self, sql: str, values: dict[str, Any]) -> Any:
        """The first row of the query, or None."""
        self._deadline = time.perf_counter() + READ_BUDGET_S
        return self._connection.execute(sql, values).fetchone()

    def close(self) -> None:
        self._connection.close()

    def _over_budget(self) -> int:
        return time.perf_counter() > self._deadline  # true: SQLite interrupts the statement


def optimize(engine: Engine) -> None:
    """SQLite's `PRAGMA optimize`: refresh the planner's statistics where they are stale
    (cheap when nothing changed). Blocking; errors are not the caller's concern."""
    if engine.dialect.name != "sqlite":
        return
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA optimize")
    except Exception:  # noqa: BLE001 - an optimisation, never a reason to fail closing
        pass
