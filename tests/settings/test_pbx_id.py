"""daemon.pbx_id: this PBX's name in a store several daemons share."""
from __future__ import annotations

from agi_daemon.settings.loader import check_config
from tests.daemon_harness import write_config


def config_with(tmp_path, database: str, pbx_line: str = ""):
    config = write_config(tmp_path, database=database)
    config.write_text(config.read_text().replace("  crm_deadline_ms:", f"{pbx_line}  crm_deadline_ms:", 1))
    return config


def test_postgresql_without_a_pbx_id_is_a_warning_that_names_the_key(tmp_path):
    problems = check_config(config_with(tmp_path, "postgresql://crm@127.0.0.1/crm"), {})
    [problem] = [p for p in problems if "pbx_id" in str(p)]
    assert problem.warning and "crm.embedded.database: warning:" in str(problem)


def test_postgresql_with_a_pbx_id_has_no_warning(tmp_path):
    problems = check_config(config_with(tmp_path, "postgresql://crm@127.0.0.1/crm", "  pbx_id: paris\n"), {})
    assert [str(p) for p in problems if "pbx_id" in str(p)] == []


def test_pbx_id_with_a_colon_is_refused_at_its_line(tmp_path):
    config = config_with(tmp_path, f"sqlite:///{tmp_path}/crm.sqlite3", '  pbx_id: "paris:1"\n')
    line = config.read_text().splitlines().index('  pbx_id: "paris:1"') + 1
    [problem] = check_config(config, {})
    assert not problem.warning and str(problem).startswith(f"{config}:{line}: daemon.pbx_id: string should match")
