"""`agi-daemon simulate`, run as the admin runs it: the real command in a subprocess, on the
example config with its CRM in a temporary directory."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.database import create_database

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "agi-daemon.yaml"


@pytest.fixture
def config(tmp_path):
    text = EXAMPLE.read_text().replace("sqlite:///var/crm.sqlite3", f"sqlite:///{tmp_path}/crm.sqlite3")
    path = tmp_path / "agi-daemon.yaml"
    path.write_text(text)
    create_database(tmp_path / "crm.sqlite3")  # simulate reads the CRM, never creates it
    return path


ENV = {**os.environ, "AGI_DAEMON_AMI_SECRET": "s3cret-ami", "AGI_DAEMON_ARI_PASSWORD": "s3cret-ari"}


def agi_daemon(*argv, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agi_daemon", *map(str, argv)], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=60)


def simulate(config, *argv):
    return agi_daemon("simulate", "-c", config, *argv, cwd=config.parent)


def simulate_json(config, *argv):
    done = simulate(config, "--json", *argv)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def fired(result):
    return [step["rule"] for step in result["trace"] if step["fired"]]


def test_simulate_incoming_without_line_is_a_usage_error(config):
    done = simulate(config, "--direction", "incoming", "--caller", "0699999999")
    assert done.returncode == 2 and done.stdout == ""
    assert "--direction incoming needs --line" in done.stderr


def test_simulate_unknown_line_exits_non_zero_and_lists_the_lines(config):
    done = simulate(config, "--direction", "incoming", "--line", "0100000000", "--caller", "0699999999")
    assert done.returncode == 1 and done.stdout == ""
    assert "'0100000000' is not among the numbers of the config" in done.stderr
    assert "+33 1 84 88 00 00 (Paris sales line), +33 4 72 00 00 00 (Lyon support line)" in done.stderr


def test_simulate_outgoing_from_unknown_extension_is_refused_with_the_extensions(config):
    done = simulate(config, "--direction", "outgoing", "--caller", "109", "--callee", "0699999999")
    assert done.returncode == 1 and done.stdout == ""
    assert "'109' is not an employee's extension" in done.stderr and "101 (alice), 102 (bob), 103 (carol)" in done.stderr


def test_simulate_outgoing_line_other_than_the_employees_is_refused_with_the_line_used(config):
    done = simulate(config, "--direction", "outgoing", "--caller", "101", "--callee", "0699999999", "--line", "04 72 00 00 00")
    assert done.returncode == 1 and done.stdout == ""
    assert "goes out on line +33 1 84 88 00 00 (Paris sales line), not +33 4 72 00 00 00" in done.stderr


def test_simulate_outgoing_with_the_employees_own_line_is_honoured_and_the_trace_names_it(config):
    result = simulate_json(config, "--direction", "outgoing", "--caller", "103", "--callee", "0699999999", "--line", "+33 4 72 00 00 00")
    assert result["line"] == {"number": "+33472000000", "name": "Lyon support line"}
    assert result["trace"][0] == {"rule": "line", "fired": True, "reason": "line +33472000000 (Lyon support line), the line of employee carol"}
    assert result["route"]["trunk_target"] == "PJSIP/+33699999999@trunk"


def test_simulate_outgoing_from_an_employee_without_a_line_says_the_first_line_is_used(config):
    result = simulate_json(config, "--direction", "outgoing", "--caller", "102", "--callee", "0699999999")
    assert result["trace"][0]["reason"] == "line +33184880000 (Paris sales line), the first line of the config: employee bob has no line of their own"


def test_simulate_text_output_reads_as_words_not_python_values(config):
    done = simulate(config, "--direction", "incoming", "--line", "0184880000", "--caller", "0699999999")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "line: +33 1 84 88 00 00 (Paris sales line)" in out
    assert "ring queue group sales: PJSIP/101 then PJSIP/102, 20 s each (in_order)" in out
    assert "CRM: create a lead for +33 6 99 99 99 99, source CALL, responsible alice" in out
    assert "✓ R9: responsible is alice, first member of queue group sales" in out
    assert "<" not in out and "&" not in out and "{" not in out


def test_simulate_simple_mode_text_names_the_deal_pipeline(config):
    config.write_text(config.read_text().replace("mode: classic", "mode: simple").replace("pipeline: general", "pipeline: inbound"))
    done = simulate(config, "--direction", "incoming", "--line", "0184880000", "--caller", "0699999999")
    assert "CRM: create a deal in pipeline inbound with a contact (and a lead converted at once)" in done.stdout
    assert "Crm" not in done.stdout


def test_simulate_ring_all_group_rings_everyone_together(config):
    done = simulate(config, "--direction", "incoming", "--line", "0472000000", "--caller", "0699999999")
    assert "ring queue group support: PJSIP/103 and PJSIP/102 together for 30 s (ring_all)" in done.stdout


def test_simulate_unknown_caller_shows_lead_creation_and_its_rules(config):
    result = simulate_json(config, "--direction", "incoming", "--line", "01 84 88 00 00", "--caller", "06 99 99 99 99")
    assert result["status"] == "ok"
    assert result["crm_action"]["create"]["responsible"] == "alice"
    assert result["crm_action"]["create"]["source"] == "CALL"
    assert fired(result) == ["line", "queue", "R4", "R3", "R1", "R5", "R9", "R12", "R10"]


def test_simulate_known_client_rings_responsible_first_and_creates_nothing(config):
    added = agi_daemon("crm", "add", "company", "-c", config, "--name", "ACME", "--phone", "0611223344", "--responsible", "bob", cwd=config.parent)
    assert added.returncode == 0, added.stderr
    result = simulate_json(config, "--direction", "incoming", "--line", "+33184880000", "--caller", "0611223344")
    assert result["route"]["responsible"] == "bob" and result["route"]["responsible_target"] == "PJSIP/102"
    assert result["known"] == {"entity": "company:1", "responsible": "bob"}
    assert "R6" in fired(result)
    listed = agi_daemon("crm", "list", "leads", "-c", config, "--json", cwd=config.parent)
    assert json.loads(listed.stdout) == []  # simulate created nothing


@pytest.mark.parametrize(
    "argv, rule, status",
    [
        (["--direction", "incoming", "--line", "0184880000", "--caller", "+33 1 40 00 00 00"], "R7", "excluded"),
        (["--direction", "incoming", "--line", "0184880000", "--caller", "0612000001"], "R8", "excluded"),
        (["--direction", "incoming", "--line", "0472000000", "--caller", "0699999999"], "R3", "ok"),
        (["--direction", "outgoing", "--caller", "103", "--callee", "0699999999"], "R3", "ok"),
    ],
)
def test_simulate_names_the_rule_that_fired(config, argv, rule, status):
    result = simulate_json(config, *argv)
    assert result["status"] == status and rule in fired(result)


def test_simulate_simple_mode_shows_the_deal_pipeline_and_what_is_created(config):
    config.write_text(config.read_text().replace("mode: classic", "mode: simple").replace("pipeline: general", "pipeline: inbound")
                      .replace("create_with: contact", "create_with: company"))
    result = simulate_json(config, "--direction", "incoming", "--line", "0184880000", "--caller", "0699999999")
    create = result["crm_action"]["create"]
    assert (create["mode"], create["pipeline"], create["create_with"]) == ("simple", "inbound", "company")
    assert {"R1", "R11", "R12"} <= set(fired(result))
    r11 = next(step for step in result["trace"] if step["rule"] == "R11")
    assert r11["reason"] == "the deal goes to pipeline inbound"


def test_simulate_line_without_reassign_says_transfers_keep_the_responsible(config):
    config.write_text(config.read_text().replace("reassign_on_manual_transfer: true", "reassign_on_manual_transfer: false"))
    result = simulate_json(config, "--direction", "incoming", "--line", "0184880000", "--caller", "0699999999")
    r10 = next(step for step in result["trace"] if step["rule"] == "R10")
    assert not r10["fired"] and "reassign_on_manual_transfer is off" in r10["reason"]


async def test_simulate_with_a_webhook_crm_asks_its_lookup_url_and_sends_no_event(config):
    """With crm.adapter webhook the caller is looked up where the daemon looks (the lookup
    URL), as the admin page's simulator does, not in the local database, and its answer is
    waited for even past crm_deadline_ms (the decision with the CRM's answer)."""
    from tests.crm.webhook_crm import SECRET, WebhookCrmServer

    server = await WebhookCrmServer().start()
    try:
        known = server.add_record("contact", "ACME", "+33611223344", "bob")
        server.lookup_delay = 0.5  # past crm_deadline_ms (300 ms): simulate waits for the answer all the same
        text = config.read_text().replace("  adapter: embedded\n", (
            f"  adapter: webhook\n  webhook: {{url: \"{server.url}\", secret: \"{SECRET}\", "
            f"lookup_url: \"{server.lookup_url}\", timeout_ms: 2000}}\n"))
        assert "adapter: webhook" in text
        config.write_text(text)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agi_daemon", "simulate", "-c", str(config), "--json", "--direction", "incoming",
            "--line", "+33184880000", "--caller", "0611223344", cwd=config.parent, env=ENV,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        await server.stop()
    assert process.returncode == 0, err.decode()
    result = json.loads(out)
    assert result["known"] == {"entity": known, "responsible": "bob"}
    assert result["route"]["responsible"] == "bob"
    assert server.requests == 0  # the lookup is a GET; no event was sent
