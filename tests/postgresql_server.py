"""A real PostgreSQL server for the tests: Debian's binaries, the test session's own cluster.

    server = PostgresServer.start_new()      # initdb into a temp dir, postgres on 127.0.0.1:<ephemeral>
    url = server.create_database("t1")       # postgresql://crm@127.0.0.1:PORT/t1, a fresh database
    server.stop(); server.start()            # a restart, same port and data
    server.destroy()

The server runs as the `postgres` system user when the tests run as root (PostgreSQL refuses
root; setpriv execs, so signals reach the postmaster itself, and its parent-death signal stops
the server when the test session is killed), else as the current user. Durability is off (fsync, synchronous_commit): the cluster
lives only as long as the session, and a restart is a clean shutdown, which loses nothing.
Provisioned by scripts/postgresql-sandbox.sh (`make test` runs it).
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

USER = "crm"  # the database role the CRM connects as (the cluster's superuser, trust on loopback)
TEMPLATE = "crm_template"  # a database already at the latest migration: new ones copy it


def binaries() -> Path | None:
    """The bin directory of the newest PostgreSQL installed, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: [int(x) for x in p.split("/")[4].split(".")])
    return Path(found[-1]).parent if found else None


def unavailable_reason() -> str | None:
    """Why no server can be started here, or None."""
    try:
        import psycopg  # noqa: F401 - the driver of agi-daemon[postgresql]
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgresql]')"
    if binaries() is None:
        return "no PostgreSQL under /usr/lib/postgresql (run scripts/postgresql-sandbox.sh as root)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` system user to run the server as"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    def __init__(self, bin_dir: Path, directory: Path, port: int) -> None:
        self.bin_dir = bin_dir
        self.directory = directory
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._databases = 0

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def sockets(self) -> Path:
        return self.directory / "run"

    @classmethod
    def start_new(cls) -> PostgresServer:
        bin_dir = binaries()
        assert bin_dir is not None
        directory = Path(tempfile.mkdtemp(prefix="agi-daemon-pg-"))
        server = cls(bin_dir, directory, _free_port())
        server.sockets.mkdir()
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            for path in (directory, server.sockets):
                os.chown(path, account.pw_uid, account.pw_gid)
        server._run("initdb", "-D", str(server.data), "-U", USER, "-A", "trust", "-E", "UTF8",
                    "--locale=C", "--no-sync")
        try:
            server.start()
            server._admin(f"CREATE DATABASE {TEMPLATE}")
            from agi_daemon.crm.database import database_url
            from agi_daemon.crm.migrations import upgrade_to_head

            upgrade_to_head(database_url(server.url(TEMPLATE)))
        except BaseException:
            server.destroy()
            raise
        return server

    def url(self, database: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, *, migrated: bool = True) -> str:
        """A new database (a copy of the migrated template, or empty); its URL."""
        self._databases += 1
        name = f"test_{self._databases}"
        template = TEMPLATE if migrated else "template0"
        self._admin(f"CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY")
        return self.url(name)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server (again) and wait until it accepts connections."""
        assert self._process is None or self._process.poll() is not None
        self._process = subprocess.Popen(
            self._as_owner(
                str(self.bin_dir / "postgres"), "-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port),
                "-k", str(self.sockets), "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off", "-c", "max_connections=200", "-c", "logging_collector=off",
            ),
            stdout=subprocess.DEVNULL, stderr=(self.directory / "server.log").open("ab"),
            start_new_session=True, cwd=self.directory,
        )
        deadline = time.monotonic() + 30
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"postgres exited ({self._process.returncode}): {self.log_tail()}")
            ready = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER],
                check=False,
            )
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not accept connections in 30 s: {self.log_tail()}")
            time.sleep(0.05)

    def stop(self, *, mode: str = "fast") -> None:
        """Stop the server: `fast` (SIGINT: sessions ended, clean shutdown) or `immediate`
        (SIGQUIT: no shutdown checkpoint, recovery at the next start)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT if mode == "fast" else signal.SIGQUIT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self) -> str:
        try:
            return (self.directory / "server.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, dbname="postgres",
                             autocommit=True, connect_timeout=10) as connection:
            connection.execute(sql.encode())  # our own fixed statements

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run(self._as_owner(str(self.bin_dir / program), *args), capture_output=True, text=True,
                                check=False, cwd=self.directory)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed: {result.stdout}{result.stderr}")

    @staticmethod
    def _as_owner(*command: str) -> list[str]:
        """The command as the `postgres` system user when we are root (PostgreSQL refuses root)."""
        if os.geteuid() != 0:
            return list(command)
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--pdeathsig=INT", "--", *command]
