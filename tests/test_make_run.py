"""`make run` is for a checkout: it must never answer on the production FastAGI port, where
the PBX's dialplan would send it real calls, nor write to the production database."""
import subprocess
import sys
from pathlib import Path

from agi_daemon.settings import SecretsNeeded, load_settings

REPO = Path(__file__).resolve().parents[1]


def test_make_run_serves_the_development_config():
    dry = subprocess.run(["make", "-n", "run"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    runs = [line for line in dry.stdout.splitlines() if "agi-daemon run" in line]
    assert runs and all("-c var/dev.yaml" in line for line in runs), dry.stdout


def test_development_config_listens_on_the_dev_port_with_a_dev_database(tmp_path):
    made = subprocess.run([sys.executable, str(REPO / "scripts" / "dev_config.py"), str(tmp_path / "dev.yaml")],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    settings = load_settings(tmp_path / "dev.yaml", {}, secrets=SecretsNeeded.NONE)
    assert (settings.daemon.fastagi.listen.host, settings.daemon.fastagi.listen.port) == ("127.0.0.1", 14573)
    assert settings.daemon.web.listen.port != 8080
    assert settings.crm.embedded.database == f"sqlite:///{tmp_path / 'dev-crm.sqlite3'}"
    production = load_settings(REPO / "config" / "agi-daemon.yaml", {}, secrets=SecretsNeeded.NONE)
    assert production.daemon.fastagi.listen.port == 4573
    assert settings.rules == production.rules
