"""What the admin command line says when something is wrong around it (README, "Command line"):
a database it cannot open, a schema of another version, an import stopped part way, Ctrl-C,
more dead letters than it lists, a file read from a pipe. Each time one line naming the
problem, a non-zero exit, no traceback, and nothing lost or half-done without saying so."""
from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agi_daemon.cli import main
from agi_daemon.core.commands import CreateCallRecords
from agi_daemon.core.model import CrmMode, Direction, RecordPlan
from agi_daemon.crm import embedded, outbox_store
from agi_daemon.crm.embedded import EmbeddedCrm
from tests.asterisk.sandbox import closed_port
from tests.daemon_harness import write_config
from tests.fakes.database import create_database, migrate_to, migration_head
from tests.postgresql_server import PostgresServer

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "agi-daemon.yaml"
SECRETS = {"AGI_DAEMON_AMI_SECRET": "s3cret-ami", "AGI_DAEMON_ARI_PASSWORD": "s3cret-ari"}
FUTURE = "0011_future"
SIMULATE = ("simulate", "--direction", "incoming", "--line", "0184880000", "--caller", "0611223344")


def config_for(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "agi-daemon.yaml"
    path.write_text(EXAMPLE.read_text().replace('"sqlite:///var/crm.sqlite3"', f'"{url}"'))
    return path


@pytest.fixture
def config(tmp_path, monkeypatch):
    """The example config, its CRM in tmp_path/crm.sqlite3 (not created)."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))  # user set-password reads it
    return config_for(tmp_path, f"sqlite:///{tmp_path}/crm.sqlite3")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err.strip()


def revision(database: Path) -> str:
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def contacts_in(database: Path) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        return connection.execute("SELECT count(*) FROM contacts").fetchone()[0]


def a_csv(tmp_path: Path, rows: int) -> Path:
    csv = tmp_path / "contacts.csv"
    csv.write_text("name,phone\n" + "".join(f"Client {n},+33 6 {n:08d}\n" for n in range(rows)))
    return csv


def commands(tmp_path: Path) -> dict[str, tuple[object, ...]]:
    csv = tmp_path / "one.csv"
    csv.write_text("name,phone\nClient,0611000001\n")
    return {
        "simulate": SIMULATE,
        "crm-list": ("crm", "list", "contacts", "--json"),
        "crm-add": ("crm", "add", "contact", "--name", "Client", "--phone", "0611223344"),
        "crm-import": ("crm", "import", "contacts", csv),
        "set-password": ("user", "set-password", "bob"),
        "outbox-list": ("outbox", "list"),
        "outbox-retry": ("outbox", "retry", "3"),
        "outbox-drop": ("outbox", "drop", "3"),
        "db-upgrade": ("db", "upgrade"),
    }


EVERY = ["simulate", "crm-list", "crm-add", "crm-import", "set-password", "outbox-list", "outbox-retry",
         "outbox-drop", "db-upgrade"]
FIVE = EVERY[:5]


# ---------------------------------------------------------------- 1. a database that cannot be opened

@pytest.mark.parametrize("command", FIVE)
def test_a_file_that_is_not_a_database_is_one_line_from_every_command(command, config, tmp_path, capsys):
    (tmp_path / "crm.sqlite3").write_bytes(b"these are no SQLite pages " * 400)
    code, out, err = run(capsys, *commands(tmp_path)[command], "-c", config)
    assert (code, out) == (1, "")
    assert one_line(err) == "agi-daemon: open the CRM database: file is not a database"


@pytest.mark.parametrize("command", ["crm-add", "crm-import", "set-password"])
def test_a_database_whose_folder_cannot_be_made_is_one_line_from_the_commands_that_write(command, tmp_path, config, capsys):
    config.write_text(config.read_text().replace(f"sqlite:///{tmp_path}/crm.sqlite3", "sqlite:////proc/nowhere/crm.sqlite3"))
    code, out, err = run(capsys, *commands(tmp_path)[command], "-c", config)
    assert (code, out) == (1, "")
    assert one_line(err).startswith("agi-daemon: open the CRM database: ") and "/proc/nowhere" in err


# ---------------------------------------------------------------- 2. a schema this version does not know

def from_the_future(database: Path) -> None:
    """A database a newer agi-daemon migrated (then the package was rolled back)."""
    create_database(database)
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = ?", (FUTURE,))


@pytest.mark.parametrize("command", EVERY)
def test_a_schema_newer_than_this_version_is_one_line_naming_it_from_every_command(command, config, tmp_path, capsys):
    from_the_future(tmp_path / "crm.sqlite3")
    code, out, err = run(capsys, *commands(tmp_path)[command], "-c", config)
    assert (code, out) == (1, "")
    line = one_line(err)
    assert f"the CRM database's schema is at revision {FUTURE}, newer than this version of agi-daemon" in line
    assert revision(tmp_path / "crm.sqlite3") == FUTURE and contacts_in(tmp_path / "crm.sqlite3") == 0


def test_run_refuses_to_start_on_a_schema_newer_than_this_version(tmp_path):
    config = write_config(tmp_path, ami=(closed_port(), "agi-daemon", "x"))  # FastAGI and web on port 0
    from_the_future(tmp_path / "crm.sqlite3")
    done = subprocess.run([sys.executable, "-m", "agi_daemon", "run", "-c", str(config)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"agi-daemon: cannot start: the CRM database's schema is at revision {FUTURE}, newer than this version")
    assert revision(tmp_path / "crm.sqlite3") == FUTURE


# ---------------------------------------------------------------- 3. the commands that only read migrate nothing

READERS = ["simulate", "crm-list", "outbox-list"]


@pytest.mark.parametrize("command", READERS)
def test_a_command_that_only_reads_refuses_an_older_schema_and_leaves_it_as_it_is(command, config, tmp_path, capsys):
    database = tmp_path / "crm.sqlite3"
    migrate_to(f"sqlite:///{database}", "0003_web_users")  # an older daemon still runs on it
    code, out, err = run(capsys, *commands(tmp_path)[command], "-c", config)
    assert (code, out) == (1, "")
    line = one_line(err)
    assert "the CRM database's schema is at revision 0003_web_users, older than this version" in line
    assert "run `agi-daemon db upgrade` (or start the daemon) first" in line
    assert revision(database) == "0003_web_users"

    assert run(capsys, *commands(tmp_path)["crm-add"], "-c", config)[0] == 0  # a command that writes migrates
    assert revision(database) == migration_head()
    assert run(capsys, *commands(tmp_path)[command], "-c", config)[0] == 0


def test_on_a_shared_postgresql_database_a_command_that_only_reads_migrates_nothing(
        tmp_path, monkeypatch, capsys, postgresql: PostgresServer):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    url = postgresql.create_database(migrated=False)
    migrate_to(url, "0003_web_users")  # the other PBXs' daemons are older
    config = config_for(tmp_path, url)

    code, out, err = run(capsys, "crm", "list", "contacts", "--json", "-c", config)
    assert (code, out) == (1, "") and "revision 0003_web_users, older than this version" in one_line(err)
    assert run(capsys, "db", "upgrade", "-c", config)[1].endswith(
        f"upgraded from revision 0003_web_users to {migration_head()}\n")  # so it was still at 0003


# ---------------------------------------------------------------- 4. an import stopped by the database

@pytest.mark.parametrize("failure, reason", [
    (sqlite3.OperationalError("database is locked"), "(import contacts: database is locked)"),
    (sqlite3.IntegrityError("CHECK constraint failed: x"), "(the CRM refused: import contacts: CHECK constraint failed: x)"),
], ids=["unavailable", "rejected"])
def test_an_import_stopped_by_the_database_says_what_it_created_before(failure, reason, config, tmp_path, capsys,
                                                                       monkeypatch):
    csv = a_csv(tmp_path, 12_000)  # three batches of 5,000: the second fails
    insert_contacts = embedded._insert_contacts
    written = []

    def second_batch_fails(conn, rows, source):
        written.append(len(rows))
        if len(written) > 1:
            raise failure
        return insert_contacts(conn, rows, source)

    monkeypatch.setattr(embedded, "_insert_contacts", second_batch_fails)
    code, out, err = run(capsys, "crm", "import", "contacts", csv, "-c", config)

    assert (code, out) == (1, "")
    assert one_line(err) == (
        f"agi-daemon: {csv}: the import stopped {reason}; the rows up to line 5001 were handled: 5000 created, "
        "0 skipped, 0 errors. The contacts created stay, and importing the same file again skips them")
    assert contacts_in(tmp_path / "crm.sqlite3") == 5000

    monkeypatch.undo()
    code, out, _ = run(capsys, "crm", "import", "contacts", csv, "-c", config)
    assert (code, out) == (0, "7000 created, 5000 skipped, 0 errors\n")


# ---------------------------------------------------------------- 5. Ctrl-C

def test_ctrl_c_during_an_import_says_what_it_created_and_exits_130(tmp_path):
    csv = a_csv(tmp_path, 300_000)
    config = config_for(tmp_path, f"sqlite:///{tmp_path}/crm.sqlite3")
    database = tmp_path / "crm.sqlite3"
    env = {**os.environ, **SECRETS, "PYTHONPATH": str(REPO)}
    with subprocess.Popen([sys.executable, "-m", "agi_daemon", "crm", "import", "contacts", str(csv), "-c", str(config)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as importing:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and importing.poll() is None:
            try:
                if contacts_in(database) > 0:  # a batch is in: the import is under way
                    break
            except sqlite3.Error:
                pass  # not created yet
            time.sleep(0.01)
        importing.send_signal(signal.SIGINT)
        out, err = importing.communicate(timeout=60)
    assert (importing.returncode, out) == (130, "")
    line = one_line(err)
    assert line.startswith(f"agi-daemon: {csv}: the import stopped (interrupted); the rows up to line ")
    assert line.endswith("The contacts created stay, and importing the same file again skips them")
    created = int(re.search(r": (\d+) created, ", line)[1])
    assert 0 < created < 300_000 and created == contacts_in(database)  # what it says is what is in the database


def test_ctrl_c_at_the_password_prompt_is_one_line_and_exits_130(tmp_path):
    config = config_for(tmp_path, f"sqlite:///{tmp_path}/crm.sqlite3")
    argv = [sys.executable, "-m", "agi_daemon", "user", "set-password", "bob", "-c", str(config)]
    env = {**os.environ, **SECRETS, "PYTHONPATH": str(REPO)}
    pid, terminal = pty.fork()  # the prompt is on a terminal: the command's own, as an admin's
    if pid == 0:
        os.execve(sys.executable, argv, env)
    said, status = b"", None
    try:
        deadline = time.monotonic() + 30
        while b"New password: " not in said and time.monotonic() < deadline:
            if select.select([terminal], [], [], 0.1)[0]:
                said += os.read(terminal, 1024)
        assert b"New password: " in said
        os.write(terminal, b"\x03")  # Ctrl-C, as typed
        deadline = time.monotonic() + 10
        while status is None and time.monotonic() < deadline:
            if select.select([terminal], [], [], 0.1)[0]:
                try:
                    said += os.read(terminal, 1024)
                except OSError:  # the command has exited: its terminal is gone
                    pass
            done, raw = os.waitpid(pid, os.WNOHANG)
            status = os.waitstatus_to_exitcode(raw) if done else None
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(terminal)
    text = said.decode().replace("\r\n", "\n")
    assert status == 130, text
    assert text.endswith("New password: ^C\nagi-daemon: interrupted, no password was set\n") or text.endswith(
        "New password: \nagi-daemon: interrupted, no password was set\n"), text
    assert not (tmp_path / "crm.sqlite3").exists()


# ---------------------------------------------------------------- 6. more waiting than outbox list shows

async def leave_pending(database: Path, count: int) -> None:
    def leave(conn):
        now = datetime.now(UTC)
        for n in range(count):
            plan = RecordPlan(CrmMode.CLASSIC, "+33699112233", "Jeanne", "CALL", "alice", f"L{n}", "+33184880000",
                              Direction.INCOMING)
            outbox_store.add(conn, CreateCallRecords(plan), now)

    async with EmbeddedCrm(f"sqlite:///{database}") as store:
        await store.transaction("test: leave", leave, write=True)


def test_outbox_list_says_how_many_more_wait_than_it_lists(config, tmp_path, capsys):
    asyncio.run(leave_pending(tmp_path / "crm.sqlite3", 1003))

    code, out, err = run(capsys, "outbox", "list", "-c", config)
    lines = out.splitlines()
    assert (code, err) == (0, "") and len(lines) == 1 + 1000 + 1
    assert all(line.split()[1] == "pending" for line in lines[1:-1])
    assert lines[-1] == "... and 3 more, not listed (the oldest 1,000 are)"

    code, out, err = run(capsys, "outbox", "list", "--json", "-c", config)
    assert code == 0 and len(json.loads(out)) == 1000  # stdout stays one JSON array
    assert err == "agi-daemon: outbox list: 3 more not in the JSON array (it holds the oldest 1,000)\n"


# ---------------------------------------------------------------- 7. outbox retry / drop create nothing

@pytest.mark.parametrize("action", ["retry", "drop"])
def test_outbox_retry_and_drop_without_a_database_say_so_and_create_none(action, tmp_path, monkeypatch, capsys):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    config = config_for(tmp_path, f"sqlite:///{tmp_path}/var/crm.sqlite3")
    code, out, err = run(capsys, "outbox", action, "3", "-c", config)
    assert (code, out) == (1, "")
    assert one_line(err).startswith(f"agi-daemon: no CRM database at {tmp_path}/var/crm.sqlite3")
    assert not (tmp_path / "var").exists()


# ---------------------------------------------------------------- 8. a file read from a pipe; UTF-16

def agi_daemon(*argv: object, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, **SECRETS, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "agi_daemon", *map(str, argv)], input=stdin, capture_output=True,
                          env=env, timeout=60)


def test_crm_import_reads_a_pipe(tmp_path):
    config = config_for(tmp_path, f"sqlite:///{tmp_path}/crm.sqlite3")
    text = "name;phone\nJean Dupont;0611000001\nHélène Lefèvre;0611000002\n"

    refused = agi_daemon("crm", "import", "contacts", "/dev/stdin", "-c", config, stdin=text.encode("cp1252"))
    assert refused.returncode == 1 and refused.stderr.decode() == (
        "/dev/stdin:3: not UTF-8 (save as UTF-8, or pass --encoding cp1252)\n")  # checked before anything is imported

    done = agi_daemon("crm", "import", "contacts", "/dev/stdin", "-c", config, "--encoding", "cp1252",
                      stdin=text.encode("cp1252"))
    assert (done.returncode, done.stdout, done.stderr) == (0, b"2 created, 0 skipped, 0 errors\n", b"")
    done = agi_daemon("crm", "import", "contacts", "/dev/stdin", "-c", config, stdin=b"name,phone\nPaul,0611000003\n")
    assert (done.returncode, done.stdout) == (0, b"1 created, 0 skipped, 0 errors\n")
    listed = agi_daemon("crm", "list", "contacts", "--json", "-c", config, stdin=b"")
    assert [c["name"] for c in json.loads(listed.stdout)] == ["Jean Dupont", "Hélène Lefèvre", "Paul"]


def test_a_utf16_file_is_told_to_pass_its_encoding_and_imports_with_it(config, tmp_path, capsys):
    csv = tmp_path / "unicode.txt"  # Excel's "Unicode text": UTF-16 with a byte order mark, tabs
    csv.write_text("name\tphone\nZoé Martin\t0611000001\n", encoding="utf-16")

    code, out, err = run(capsys, "crm", "import", "contacts", csv, "-c", config)
    assert (code, out) == (1, "")
    assert err == f"{csv}:1: UTF-16 text (Excel's \"Unicode text\"), not UTF-8: pass --encoding utf-16\n"
    assert not (tmp_path / "crm.sqlite3").exists()  # refused before the CRM was opened

    code, out, _ = run(capsys, "crm", "import", "contacts", csv, "-c", config, "--encoding", "utf-16")
    assert (code, out) == (0, "1 created, 0 skipped, 0 errors\n")
    assert [c["name"] for c in json.loads(run(capsys, "crm", "list", "contacts", "--json", "-c", config)[1])] == [
        "Zoé Martin"]


def test_commands_run_with_standard_error_closed(tmp_path):
    """A service manager or a script may start the daemon with 2>&-: the command line once
    failed at its import (rc 1, nothing said) because it read sys.stderr.isatty."""
    config = tmp_path / "agi-daemon.yaml"
    config.write_text(EXAMPLE.read_text().replace("sqlite:///var/crm.sqlite3", f"sqlite:///{tmp_path}/crm.sqlite3"))
    done = subprocess.run(f'"{sys.executable}" -m agi_daemon dialplan -c "{config}" 2>&-', shell=True,
                          stdout=subprocess.PIPE, env=_environ(), timeout=60)
    assert done.returncode == 0 and b"agi-daemon-fallback-incoming" in done.stdout


def test_a_database_url_of_another_kind_is_named_by_check_config_and_postgres_is_postgresql(tmp_path):
    for url, said in (("mysql://x/y", "not 'mysql'"), ("postgres://h/crm", None)):
        config = tmp_path / "agi-daemon.yaml"
        config.write_text(EXAMPLE.read_text().replace("sqlite:///var/crm.sqlite3", url))
        done = subprocess.run([sys.executable, "-m", "agi_daemon", "check-config", "-c", str(config)],
                              capture_output=True, text=True, env=_environ(), timeout=60)
        if said is None:
            assert done.returncode == 0, done.stdout + done.stderr
        else:
            assert done.returncode == 1 and "crm.embedded.database" in done.stdout and said in done.stdout


def _environ() -> dict[str, str]:
    return {**os.environ, **SECRETS, "PYTHONPATH": str(REPO)}
