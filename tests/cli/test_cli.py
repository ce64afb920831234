"""The command line contract (README, "Command line"), run in-process on real files and a real SQLite CRM."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agi_daemon.cli import main
from tests.fakes.database import create_database

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "agi-daemon.yaml"


@pytest.fixture
def config(tmp_path, monkeypatch):
    """The example config, with its CRM in tmp_path."""
    monkeypatch.setenv("AGI_DAEMON_AMI_SECRET", "s3cret-ami")
    monkeypatch.setenv("AGI_DAEMON_ARI_PASSWORD", "s3cret-ari")
    text = EXAMPLE.read_text().replace("sqlite:///var/crm.sqlite3", f"sqlite:///{tmp_path}/crm.sqlite3")
    path = tmp_path / "agi-daemon.yaml"
    path.write_text(text)
    create_database(tmp_path / "crm.sqlite3")  # read-only commands need one
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_config_on_example_is_ok(config, capsys):
    code, out, _ = run(capsys, "check-config", "-c", config)
    assert code == 0 and out.strip() == f"{config}: ok"


def test_check_config_on_broken_file_prints_file_line_path_message(config, capsys):
    broken = config.read_text().replace("members: [alice, bob]", "members: [alice, zoe]").replace("events: ami", "events: sip")
    config.write_text(broken)
    lines = broken.splitlines()
    events_line = next(i for i, text in enumerate(lines, 1) if "events: sip" in text)
    members_line = next(i for i, text in enumerate(lines, 1) if "members: [alice, zoe]" in text)
    code, out, _ = run(capsys, "check-config", "-c", config)
    assert code == 1
    assert out.splitlines() == [
        f"{config}:{events_line}: asterisk.events: must be one of: ami, ari",
        f"{config}:{members_line}: queue_groups.sales.members.1: unknown employee: zoe",
    ]
    assert "s3cret" not in out


def test_commands_refuse_a_broken_config_with_the_problem(config, capsys):
    config.write_text(config.read_text().replace("queue_group: sales", "queue_group: nowhere"))
    code, _, err = run(capsys, "crm", "list", "leads", "-c", config, "--json")
    assert code == 1 and "numbers.+33 1 84 88 00 00.queue_group" in err


def test_crm_add_then_list_round_trips_the_json_contract(config, capsys):
    code, out, _ = run(capsys, "crm", "add", "contact", "-c", config, "--name", "Client SA", "--phone", "06 11 22 33 44", "--responsible", "bob")
    assert code == 0 and json.loads(out)["phones"] == ["+33611223344"]
    code, out, _ = run(capsys, "crm", "list", "contacts", "-c", config, "--phone", "+33 6 11 22 33 44", "--json")
    assert json.loads(out) == [{
        "id": 1, "type": "contact", "name": "Client SA", "phones": ["+33611223344"], "responsible": "bob",
        "source": None, "status": None, "created_by_call": None,
    }]


def test_crm_add_with_unknown_responsible_or_bad_phone_is_refused(config, capsys):
    code, _, err = run(capsys, "crm", "add", "lead", "-c", config, "--name", "X", "--phone", "0611223344", "--responsible", "zoe")
    assert code == 1 and "'zoe' is not an employee" in err
    code, _, err = run(capsys, "crm", "add", "lead", "-c", config, "--name", "X", "--phone", "not a number")
    assert code == 1 and "'not a number' is not a phone number" in err


def test_crm_add_with_a_name_of_non_utf8_bytes_is_refused_in_one_line(config, capsys):
    name = os.fsdecode(b"Caf\xe9 Dupont")  # typed in a latin-1 terminal: how argv hands it over
    code, out, err = run(capsys, "crm", "add", "contact", "-c", config, "--name", name, "--phone", "0611223344")
    assert (code, out) == (1, "")
    assert err == "agi-daemon: the name is not UTF-8 text: check the terminal's or the file's encoding\n"


def test_crm_add_and_import_refuse_a_name_longer_than_the_crm_column(config, tmp_path, capsys):
    long_name = "N" * 100_000
    code, _, err = run(capsys, "crm", "add", "contact", "-c", config, "--name", long_name, "--phone", "0611223344")
    assert (code, err) == (1, "agi-daemon: the name is longer than 255 characters (100,000)\n")
    csv = tmp_path / "contacts.csv"
    csv.write_text(f"name,phone\n{long_name},0611000001\n{'N' * 255},0611000002\n")
    code, out, err = run(capsys, "crm", "import", "contacts", csv, "-c", config)
    assert out.strip() == "1 created, 0 skipped, 1 errors"
    assert f"{csv}:2: the name is longer than 255 characters (100,000)" in err
    code, out, _ = run(capsys, "crm", "list", "contacts", "-c", config, "--json")
    assert [len(c["name"]) for c in json.loads(out)] == [255]


def _spawned_children(pid: int) -> list[int]:
    """The processes `pid` spawned through multiprocessing (its row checker)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
    return found


def test_crm_import_whose_row_checker_dies_stops_with_one_line_and_keeps_what_it_created(config, tmp_path):
    csv = tmp_path / "contacts.csv"
    csv.write_text("name,phone\n" + "".join(f"Client {n},+33 6 {n:08d}\n" for n in range(300_000)))
    env = {**os.environ, "PYTHONPATH": str(EXAMPLE.parents[1])}
    with subprocess.Popen([sys.executable, "-m", "agi_daemon", "crm", "import", "contacts", str(csv), "-c", str(config)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as importing:
        deadline = time.monotonic() + 30
        while not (checkers := _spawned_children(importing.pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert checkers, "the import started no process to check its rows"
        os.kill(checkers[0], signal.SIGKILL)  # out of memory, say
        out, err = importing.communicate(timeout=60)
    assert importing.returncode == 1 and out == ""
    assert "the process checking the file's rows died" in err and "Traceback" not in err
    listed = subprocess.run([sys.executable, "-m", "agi_daemon", "crm", "list", "contacts", "-c", str(config), "--json"],
                            capture_output=True, text=True, env=env, timeout=60, check=True)
    assert len(json.loads(listed.stdout)) < 300_000  # what was created before stays; the rest is not


def test_crm_import_contacts_reports_bad_rows_with_their_line(config, tmp_path, capsys):
    csv = tmp_path / "contacts.csv"
    csv.write_text("name,phone,responsible\nClient A,0611000001,alice\nBroken,call me,\nClient B,+33 6 11 00 00 02,\n")
    code, out, err = run(capsys, "crm", "import", "contacts", csv, "-c", config)
    assert code == 1
    assert out.strip() == "2 created, 0 skipped, 1 errors"
    assert f"{csv}:3: " in err
    code, out, _ = run(capsys, "crm", "list", "contacts", "-c", config, "--json")
    assert [c["name"] for c in json.loads(out)] == ["Client A", "Client B"]
