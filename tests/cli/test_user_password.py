"""`agi-daemon user set-password EMPLOYEE_ID -c FILE`: the web login's password, read from
standard input when it is not a terminal, stored hashed in the daemon's store."""
from __future__ import annotations

import asyncio
import io
import sqlite3
from pathlib import Path

import pytest

from agi_daemon.cli import main
from agi_daemon.crm.embedded import EmbeddedCrm
from agi_daemon.crm.users import WebUsers, verify_password

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "agi-daemon.yaml"


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setenv("AGI_DAEMON_AMI_SECRET", "s3cret-ami")
    monkeypatch.setenv("AGI_DAEMON_ARI_PASSWORD", "s3cret-ari")
    path = tmp_path / "agi-daemon.yaml"
    path.write_text(EXAMPLE.read_text().replace("sqlite:///var/crm.sqlite3", f"sqlite:///{tmp_path}/crm.sqlite3"))
    return path


def set_password(monkeypatch, capsys, config, employee: str, typed: str):
    monkeypatch.setattr("sys.stdin", io.StringIO(typed))
    code = main(["user", "set-password", employee, "-c", str(config)])
    return code, capsys.readouterr()


def stored_hash(tmp_path, employee: str) -> str | None:
    async def read():
        async with EmbeddedCrm(f"sqlite:///{tmp_path}/crm.sqlite3") as crm:
            return await WebUsers(crm).password_hash(employee)

    return asyncio.run(read())


def test_set_password_from_stdin_stores_only_a_hash(tmp_path, config, monkeypatch, capsys):
    code, out = set_password(monkeypatch, capsys, config, "bob", "correct horse battery\n")
    assert code == 0 and "bob" in out.out
    hashed = stored_hash(tmp_path, "bob")
    assert hashed.startswith("scrypt$") and "correct horse" not in hashed
    assert verify_password("correct horse battery", hashed) and not verify_password("wrong", hashed)
    with sqlite3.connect(tmp_path / "crm.sqlite3") as db:
        dump = "\n".join(db.iterdump())
    assert "correct horse" not in dump


def test_set_password_again_replaces_the_old_one(tmp_path, config, monkeypatch, capsys):
    set_password(monkeypatch, capsys, config, "bob", "first password\n")
    set_password(monkeypatch, capsys, config, "bob", "second password\n")
    hashed = stored_hash(tmp_path, "bob")
    assert verify_password("second password", hashed) and not verify_password("first password", hashed)


@pytest.mark.parametrize("employee, typed, message", [
    ("zoe", "a long enough password\n", "not an employee"),
    ("bob", "short\n", "at least 8 characters"),
])
def test_set_password_refuses_unknown_employee_and_short_password(tmp_path, config, monkeypatch, capsys, employee, typed, message):
    with pytest.raises(SystemExit) as exit_:
        set_password(monkeypatch, capsys, config, employee, typed)
    assert message in str(exit_.value)
    assert stored_hash(tmp_path, employee) is None
