"""What a new PBX admin meets at the command line, run as they run it: `agi-daemon ...` as a
real process, from whatever directory they happen to be in."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "agi-daemon.yaml"
SECRETS = {"AGI_DAEMON_AMI_SECRET": "s3cret-ami", "AGI_DAEMON_ARI_PASSWORD": "s3cret-ari"}


def agi_daemon(*argv: object, cwd: Path, env: dict[str, str] | None = None,
               stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`agi-daemon ARGV` in `cwd`; `env` replaces the secrets of the environment."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AGI_DAEMON_")}
    environ.update(SECRETS if env is None else env)
    environ["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "agi_daemon", *map(str, argv)], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=60, input=stdin)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """An admin's folder holding the example config unchanged (database: var/crm.sqlite3)."""
    folder = tmp_path / "agi"
    folder.mkdir()
    (folder / "agi-daemon.yaml").write_text(EXAMPLE.read_text())
    return folder


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def added(site: Path, *argv: object, cwd: Path) -> dict:
    done = agi_daemon("crm", "add", *argv, "-c", site / "agi-daemon.yaml", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# ---------------------------------------------------------------- 1. the database's place

def test_relative_database_is_found_next_to_the_config_from_any_directory(site, elsewhere):
    added(site, "contact", "--name", "Client SA", "--phone", "0611223344", cwd=site)
    assert (site / "var" / "crm.sqlite3").exists()
    listed = agi_daemon("crm", "list", "contacts", "-c", "../agi/agi-daemon.yaml", "--json", cwd=elsewhere)
    assert listed.returncode == 0, listed.stderr
    assert [c["name"] for c in json.loads(listed.stdout)] == ["Client SA"]
    simulated = agi_daemon("simulate", "-c", site / "agi-daemon.yaml", "--json", "--direction", "incoming",
                           "--line", "0184880000", "--caller", "0611223344", cwd=elsewhere)
    assert json.loads(simulated.stdout)["known"]["entity"] == "contact:1"
    assert not (elsewhere / "var").exists()


@pytest.mark.parametrize("argv", [
    ["crm", "list", "contacts", "--json"],
    ["simulate", "--direction", "incoming", "--line", "0184880000", "--caller", "0611223344"],
], ids=["crm-list", "simulate"])
def test_read_only_command_without_database_is_an_error_naming_it_and_creates_nothing(site, elsewhere, argv):
    done = agi_daemon(*argv, "-c", site / "agi-daemon.yaml", cwd=elsewhere)
    assert done.returncode == 1
    assert str(site / "var" / "crm.sqlite3") in done.stderr and "Traceback" not in done.stderr
    assert not (site / "var").exists() and not (elsewhere / "var").exists()


# ---------------------------------------------------------------- 2. CSV files as they come

def test_cp1252_csv_says_which_line_is_not_utf8_and_imports_with_encoding(site):
    csv = site / "contacts.csv"
    csv.write_bytes("name;phone\nJean Dupont;0611000001\nHélène Lefèvre;0611000002\n".encode("cp1252"))
    refused = agi_daemon("crm", "import", "contacts", csv, "-c", "agi-daemon.yaml", cwd=site)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.strip() == f"{csv}:3: not UTF-8 (save as UTF-8, or pass --encoding cp1252)"
    imported = agi_daemon("crm", "import", "contacts", csv, "-c", "agi-daemon.yaml", "--encoding", "cp1252", cwd=site)
    assert imported.returncode == 0, imported.stderr
    listed = agi_daemon("crm", "list", "contacts", "-c", "agi-daemon.yaml", "--json", cwd=site)
    assert [c["name"] for c in json.loads(listed.stdout)] == ["Jean Dupont", "Hélène Lefèvre"]


def test_utf8_csv_with_byte_order_mark_imports(site):
    csv = site / "contacts.csv"
    csv.write_bytes("\ufeffname,phone\nHélène,0611000002\n".encode("utf-8"))
    done = agi_daemon("crm", "import", "contacts", csv, "-c", "agi-daemon.yaml", cwd=site)
    assert done.returncode == 0 and done.stdout.startswith("1 created")


def test_importing_a_file_twice_prints_a_summary_and_a_few_examples_all_with_verbose(site):
    csv = site / "contacts.csv"
    csv.write_text("name,phone\n" + "".join(f"Client {i},06 11 00 {i // 100:02d} {i % 100:02d}\n" for i in range(300)))
    first = agi_daemon("crm", "import", "contacts", csv, "-c", "agi-daemon.yaml", cwd=site)
    assert first.returncode == 0 and first.stdout.startswith("300 created, 0 skipped, 0 errors")
    again = agi_daemon("crm", "import", "contacts", csv, "-c", "agi-daemon.yaml", cwd=site)
    assert again.returncode == 0
    assert again.stdout.startswith("0 created, 300 skipped, 0 errors")
    examples = [line for line in again.stderr.splitlines() if line.startswith(f"{csv}:")]
    assert 1 <= len(examples) <= 5 and examples[0].startswith(f"{csv}:2: skipped")
    assert "295 more" in again.stderr and "--verbose" in again.stderr
    verbose = agi_daemon("crm", "import", "contacts", csv, "-c", "agi-daemon.yaml", "--verbose", cwd=site)
    assert len([line for line in verbose.stderr.splitlines() if line.startswith(f"{csv}:")]) == 300


# ---------------------------------------------------------------- 3. secrets only where used

@pytest.mark.parametrize("argv", [
    ["crm", "list", "contacts", "--json"],
    ["crm", "add", "contact", "--name", "Client SA", "--phone", "0611223344"],
    ["crm", "import", "contacts", "contacts.csv"],
    ["simulate", "--direction", "incoming", "--line", "0184880000", "--caller", "0699000000"],
    ["dialplan"],
], ids=["crm-list", "crm-add", "crm-import", "simulate", "dialplan"])
def test_offline_commands_need_no_secret(site, argv):
    added(site, "lead", "--name", "Someone", "--phone", "0699000000", cwd=site)
    (site / "contacts.csv").write_text("name,phone\nClient B,0611000002\n")
    done = agi_daemon(*argv, "-c", "agi-daemon.yaml", cwd=site, env={})
    assert done.returncode == 0, done.stderr


def test_check_config_without_secrets_fails_for_ami_and_warns_for_unused_ari(site):
    done = agi_daemon("check-config", "-c", "agi-daemon.yaml", cwd=site, env={})
    lines = done.stdout.splitlines()
    assert done.returncode == 1
    assert any(re.fullmatch(r"agi-daemon\.yaml:\d+: asterisk\.ami\.secret: environment variable "
                            r"AGI_DAEMON_AMI_SECRET is not set", line) for line in lines), lines
    assert any(re.fullmatch(r"agi-daemon\.yaml:\d+: asterisk\.ari\.password: warning: environment variable "
                            r"AGI_DAEMON_ARI_PASSWORD is not set \(not needed while events is ami\)", line)
               for line in lines), lines


def test_check_config_in_ari_mode_needs_the_ari_password_and_only_warns_for_the_unused_ami_secret(site):
    config = site / "agi-daemon.yaml"
    config.write_text(config.read_text().replace("  events: ami\n", "  events: ari\n"))
    done = agi_daemon("check-config", "-c", "agi-daemon.yaml", cwd=site, env={"AGI_DAEMON_ARI_PASSWORD": "x"})
    assert done.returncode == 0, done.stdout
    assert "asterisk.ami.secret: warning: environment variable AGI_DAEMON_AMI_SECRET is not set " \
           "(not needed while events is ari)" in done.stdout
    assert done.stdout.splitlines()[-1] == "agi-daemon.yaml: ok"


def test_check_config_with_only_the_ami_secret_passes_with_a_warning(site):
    done = agi_daemon("check-config", "-c", "agi-daemon.yaml", cwd=site, env={"AGI_DAEMON_AMI_SECRET": "x"})
    assert done.returncode == 0, done.stdout
    assert "warning: environment variable AGI_DAEMON_ARI_PASSWORD is not set" in done.stdout
    assert done.stdout.splitlines()[-1] == "agi-daemon.yaml: ok"


def test_run_without_the_ami_secret_says_so(site):
    done = agi_daemon("run", "-c", "agi-daemon.yaml", cwd=site, env={})
    assert done.returncode == 1
    assert "asterisk.ami.secret: environment variable AGI_DAEMON_AMI_SECRET is not set" in done.stderr
    assert "ARI_PASSWORD" not in done.stderr


# ---------------------------------------------------------------- 4. one check for add and import

def test_import_refuses_a_responsible_who_is_not_an_employee_like_add(site):
    csv = site / "contacts.csv"
    csv.write_text("name,phone,responsible\nClient A,0611000001,zoe\nClient B,0611000002,bob\n")
    imported = agi_daemon("crm", "import", "contacts", csv, "-c", "agi-daemon.yaml", cwd=site)
    assert imported.returncode == 1
    assert f"{csv}:2: the responsible 'zoe' is not an employee" in imported.stderr
    add = agi_daemon("crm", "add", "contact", "-c", "agi-daemon.yaml", "--name", "C", "--phone", "0611000003",
                     "--responsible", "zoe", cwd=site)
    assert add.returncode == 1 and "the responsible 'zoe' is not an employee" in add.stderr


def test_add_refuses_an_empty_name_like_import(site):
    done = agi_daemon("crm", "add", "contact", "-c", "agi-daemon.yaml", "--name", " ", "--phone", "0611000003", cwd=site)
    assert done.returncode == 1 and "the name is empty" in done.stderr


def test_add_refuses_a_number_already_in_the_crm_and_import_skips_it(site):
    added(site, "contact", "--name", "Client SA", "--phone", "0611223344", cwd=site)
    again = agi_daemon("crm", "add", "lead", "-c", "agi-daemon.yaml", "--name", "Other", "--phone", "+33 6 11 22 33 44", cwd=site)
    assert again.returncode == 1 and "already on contact:1" in again.stderr
    csv = site / "contacts.csv"
    csv.write_text("name,phone\nSame,06 11 22 33 44\n")
    imported = agi_daemon("crm", "import", "contacts", csv, "-c", "agi-daemon.yaml", cwd=site)
    assert imported.stdout.startswith("0 created, 1 skipped") and "already on contact:1" in imported.stderr
    listed = agi_daemon("crm", "list", "leads", "-c", "agi-daemon.yaml", "--json", cwd=site)
    assert json.loads(listed.stdout) == []


def test_import_skips_a_number_already_on_a_lead_as_add_refuses_it(site):
    added(site, "lead", "--name", "Prospect", "--phone", "0611223344", cwd=site)
    csv = site / "contacts.csv"
    csv.write_text("name,phone\nSame,06 11 22 33 44\n")
    imported = agi_daemon("crm", "import", "contacts", csv, "-c", "agi-daemon.yaml", cwd=site)
    assert imported.stdout.startswith("0 created, 1 skipped") and "already on lead:1" in imported.stderr


# ---------------------------------------------------------------- 8. the command line itself

def test_bare_command_prints_the_help(elsewhere):
    done = agi_daemon(cwd=elsewhere)
    assert done.returncode == 2
    assert "usage: agi-daemon" in done.stdout and "check-config" in done.stdout and "simulate" in done.stdout


def test_version_is_printed(elsewhere):
    done = agi_daemon("--version", cwd=elsewhere)
    assert done.returncode == 0 and re.fullmatch(r"agi-daemon \d+\.\d+\.\d+\n", done.stdout)


def test_unknown_log_level_is_a_usage_error_not_a_traceback(site):
    done = agi_daemon("run", "-c", "agi-daemon.yaml", "--log-level", "foo", cwd=site)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--log-level" in done.stderr and "debug" in done.stderr.lower()


@pytest.mark.parametrize("argv, option", [
    (["run"], "--log-level"), (["simulate"], "--json"), (["crm", "add"], "--name"),
    (["crm", "add"], "--phone"), (["crm", "list"], "--phone"), (["crm", "list"], "--json"),
])
def test_every_option_has_a_help_text(elsewhere, argv, option):
    done = agi_daemon(*argv, "--help", cwd=elsewhere)
    described = re.search(rf"^ +{re.escape(option)}(?: [A-Z_]+)?(?:  +|\n {{20,}})\S", done.stdout, re.M)
    assert done.returncode == 0 and described, done.stdout


def test_crm_import_help_describes_the_csv_columns(elsewhere):
    done = agi_daemon("crm", "import", "--help", cwd=elsewhere)
    assert done.returncode == 0
    for words in ("name", "phone", "responsible", "header", "--encoding", "--verbose"):
        assert words in done.stdout


def test_crm_list_with_a_bad_phone_is_a_clean_error(site):
    added(site, "contact", "--name", "Client SA", "--phone", "0611223344", cwd=site)
    done = agi_daemon("crm", "list", "contacts", "-c", "agi-daemon.yaml", "--phone", "abc", cwd=site)
    assert done.returncode == 1
    assert done.stderr.strip() == "agi-daemon: --phone: 'abc' is not a phone number"
