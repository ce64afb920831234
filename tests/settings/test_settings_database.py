"""crm.embedded: the database URL and pool size, as check-config reads them."""
from __future__ import annotations

import sys

import pytest

from agi_daemon.settings import check_config, load_settings

from .settings_helpers import MINIMAL, MINIMAL_ENV, problem_lines

POSTGRESQL = MINIMAL + 'crm: {embedded: {database: "postgresql://agi_daemon@db.example.com/crm", pool_size: 8}}\n'


def test_postgresql_database_and_pool_size_are_read(write_config):
    settings = load_settings(write_config(POSTGRESQL), MINIMAL_ENV)

    assert settings.crm.embedded.database == "postgresql://agi_daemon@db.example.com/crm"
    assert settings.crm.embedded.pool_size == 8


def test_postgresql_without_its_driver_is_a_problem_that_says_what_to_install(write_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` now fails as if not installed
    path = write_config(POSTGRESQL)

    assert problem_lines(path) == [
        f"{path}:11: crm.embedded.database: PostgreSQL needs the psycopg driver: pip install 'agi-daemon[postgresql]'"
    ]


@pytest.mark.parametrize("size", [0, 65])
def test_pool_size_out_of_range_is_a_problem(write_config, size):
    path = write_config(MINIMAL + f"crm: {{embedded: {{pool_size: {size}}}}}\n")

    assert [p.path for p in check_config(path, MINIMAL_ENV)] == ["crm.embedded.pool_size"]
