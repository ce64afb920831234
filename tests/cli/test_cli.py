"""The command line contract (README, "Command line"), run in-process on real files and a real SQLite CRM."""
import asyncio
import json
from pathlib import Path

import pytest

from agi_daemon.cli import main
from agi_daemon.crm.embedded import EmbeddedCrm

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "agi-daemon.yaml"


@pytest.fixture
def config(tmp_path, monkeypatch):
    """The example config, with its CRM in tmp_path."""
    monkeypatch.setenv("AGI_DAEMON_AMI_SECRET", "s3cret-ami")
    monkeypatch.setenv("AGI_DAEMON_ARI_PASSWORD", "s3cret-ari")
    text = EXAMPLE.read_text().replace("sqlite:///var/crm.sqlite3", f"sqlite:///{tmp_path}/crm.sqlite3")
    path = tmp_path / "agi-daemon.yaml"
    path.write_text(text)
    asyncio.run(_create_database(tmp_path / "crm.sqlite3"))  # read-only commands need one
    return path


async def _create_database(file: Path) -> None:
    async with EmbeddedCrm(f"sqlite:///{file}"):
        pass


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
    events_line = next(i for i, l in enumerate(lines, 1) if "events: sip" in l)
    members_line = next(i for i, l in enumerate(lines, 1) if "members: [alice, zoe]" in l)
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


def test_crm_import_contacts_reports_bad_rows_with_their_line(config, tmp_path, capsys):
    csv = tmp_path / "contacts.csv"
    csv.write_text("name,phone,responsible\nClient A,0611000001,alice\nBroken,call me,\nClient B,+33 6 11 00 00 02,\n")
    code, out, err = run(capsys, "crm", "import", "contacts", csv, "-c", config)
    assert code == 1
    assert out.strip() == "2 created, 0 skipped, 1 errors"
    assert f"{csv}:3: " in err
    code, out, _ = run(capsys, "crm", "list", "contacts", "-c", config, "--json")
    assert [c["name"] for c in json.loads(out)] == ["Client A", "Client B"]


def simulate(capsys, config, *argv):
    code, out, _ = run(capsys, "simulate", "-c", config, "--json", *argv)
    assert code == 0
    return json.loads(out)


def fired(result):
    return [step["rule"] for step in result["trace"] if step["fired"]]


def test_simulate_unknown_caller_shows_lead_creation_and_its_rules(config, capsys):
    result = simulate(capsys, config, "--direction", "incoming", "--line", "01 84 88 00 00", "--caller", "06 99 99 99 99")
    assert result["status"] == "ok"
    assert result["crm_action"]["create"]["responsible"] == "alice"
    assert result["crm_action"]["create"]["source"] == "CALL"
    assert fired(result) == ["queue", "R4", "R3", "R1", "R5", "R9", "R12", "R10"]


def test_simulate_known_client_rings_responsible_first(config, capsys):
    run(capsys, "crm", "add", "company", "-c", config, "--name", "ACME", "--phone", "0611223344", "--responsible", "bob")
    result = simulate(capsys, config, "--direction", "incoming", "--line", "+33184880000", "--caller", "0611223344")
    assert result["route"]["responsible"] == "bob" and result["route"]["responsible_target"] == "PJSIP/102"
    assert result["known"] == {"entity": "company:1", "responsible": "bob"}
    assert "R6" in fired(result)


@pytest.mark.parametrize(
    "argv, rule, status",
    [
        (["--direction", "incoming", "--line", "0184880000", "--caller", "+33 1 40 00 00 00"], "R7", "excluded"),
        (["--direction", "incoming", "--line", "0184880000", "--caller", "0612000001"], "R8", "excluded"),
        (["--direction", "incoming", "--line", "0472000000", "--caller", "0699999999"], "R3", "ok"),
        (["--direction", "outgoing", "--caller", "103", "--callee", "0699999999"], "R3", "ok"),
    ],
)
def test_simulate_names_the_rule_that_fired(config, capsys, argv, rule, status):
    result = simulate(capsys, config, *argv)
    assert result["status"] == status and rule in fired(result)


def test_simulate_simple_mode_shows_the_deal_pipeline_and_what_is_created(config, capsys):
    config.write_text(config.read_text().replace("mode: classic", "mode: simple").replace("pipeline: general", "pipeline: inbound")
                      .replace("create_with: contact", "create_with: company"))
    result = simulate(capsys, config, "--direction", "incoming", "--line", "0184880000", "--caller", "0699999999")
    create = result["crm_action"]["create"]
    assert (create["mode"], create["pipeline"], create["create_with"]) == ("simple", "inbound", "company")
    assert {"R1", "R11", "R12"} <= set(fired(result))
    r11 = next(step for step in result["trace"] if step["rule"] == "R11")
    assert r11["reason"] == "the deal goes to pipeline inbound"


def test_simulate_line_without_reassign_says_transfers_keep_the_responsible(config, capsys):
    config.write_text(config.read_text().replace("reassign_on_manual_transfer: true", "reassign_on_manual_transfer: false"))
    result = simulate(capsys, config, "--direction", "incoming", "--line", "0184880000", "--caller", "0699999999")
    r10 = next(step for step in result["trace"] if step["rule"] == "R10")
    assert not r10["fired"] and "reassign_on_manual_transfer is off" in r10["reason"]


def test_simulate_unknown_line_is_an_error_with_reason(config, capsys):
    result = simulate(capsys, config, "--direction", "incoming", "--line", "0100000000", "--caller", "0699999999")
    assert result["status"] == "error" and "not among the numbers" in result["trace"][0]["reason"]


def test_simulate_text_output_is_readable(config, capsys):
    code, out, _ = run(capsys, "simulate", "-c", config, "--direction", "incoming", "--line", "0184880000", "--caller", "0699999999")
    assert code == 0
    assert "then queue group sales: PJSIP/101 & PJSIP/102 (in_order, 20 s)" in out
    assert "✓ R9: responsible is alice, first member of queue group sales" in out
