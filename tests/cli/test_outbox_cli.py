"""`agi-daemon outbox list|retry|drop`: the admin's view of the CRM writes waiting and the
dead letters. `list` reads only: without a database it says so and creates none."""
import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agi_daemon.cli import main
from agi_daemon.core.commands import ChangeResponsible, CreateCallRecords
from agi_daemon.core.model import CrmMode, Direction, RecordPlan
from agi_daemon.crm import outbox_store
from agi_daemon.crm.embedded import EmbeddedCrm

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "agi-daemon.yaml"
NUMBER = "+33699112233"


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setenv("AGI_DAEMON_AMI_SECRET", "s3cret-ami")
    monkeypatch.setenv("AGI_DAEMON_ARI_PASSWORD", "s3cret-ari")
    path = tmp_path / "agi-daemon.yaml"
    path.write_text(EXAMPLE.read_text().replace("sqlite:///var/crm.sqlite3", f"sqlite:///{tmp_path}/crm.sqlite3"))
    return path


async def leave_commands(database: Path) -> None:
    """A pending creation and a dead letter, as a daemon would leave them."""
    plan = RecordPlan(CrmMode.CLASSIC, NUMBER, "Jeanne Martin", "CALL", "alice", "O1", "+33184880000", Direction.INCOMING)

    def leave(conn):
        now = datetime.now(UTC)
        outbox_store.add(conn, CreateCallRecords(plan), now)
        dead = outbox_store.add(conn, ChangeResponsible("O2", NUMBER, "bob", 1), now)
        outbox_store.failed(conn, dead.id, "400 ERROR_CORE: not found", dead=True, now=now)

    async with EmbeddedCrm(f"sqlite:///{database}") as store:
        await store.transaction("test: leave", leave, write=True)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_outbox_list_without_a_database_says_so_and_creates_none(config, capsys, tmp_path):
    code, out, err = run(capsys, "outbox", "list", "-c", config, "--json")
    assert code == 1 and out == "" and "no CRM database" in err
    assert not (tmp_path / "crm.sqlite3").exists()


def test_outbox_list_retry_and_drop_as_an_admin_uses_them(config, capsys, tmp_path):
    asyncio.run(leave_commands(tmp_path / "crm.sqlite3"))
    code, out, _ = run(capsys, "outbox", "list", "-c", config, "--json")
    listed = json.loads(out)
    assert code == 0
    assert [(row["kind"], row["linkedid"], row["status"]) for row in listed] == [
        ("create_records", "O1", "pending"), ("change_responsible", "O2", "dead")]
    assert listed[1]["last_error"] == "400 ERROR_CORE: not found"
    assert "99112233" not in out and "Jeanne" not in out  # no number, no name: only what the admin acts on

    code, out, _ = run(capsys, "outbox", "list", "-c", config)
    assert code == 0 and "dead" in out and "ERROR_CORE" in out

    dead_id = listed[1]["id"]
    assert run(capsys, "outbox", "retry", "-c", config, dead_id)[:2] == (0, f"command {dead_id} is pending again\n")
    assert run(capsys, "outbox", "drop", "-c", config, listed[0]["id"])[0] == 0
    code, out, _ = run(capsys, "outbox", "list", "-c", config, "--json")
    assert [(row["linkedid"], row["status"], row["attempts"]) for row in json.loads(out)] == [("O2", "pending", 0)]
    code, _, err = run(capsys, "outbox", "drop", "-c", config, 999)
    assert code == 1 and "no pending command or dead letter 999" in err
