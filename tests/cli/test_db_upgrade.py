"""`agi-daemon db upgrade -c FILE`: the CRM database's schema brought to this version's, on
SQLite and on PostgreSQL, saying from which revision to which."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from agi_daemon.cli import main
from agi_daemon.crm.database import database_url
from tests.asterisk.sandbox import closed_port
from tests.fakes.database import migrate_to, migration_head
from tests.postgresql_server import PostgresServer

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "agi-daemon.yaml"
HEAD = migration_head()


def config_for(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "agi-daemon.yaml"
    path.write_text(EXAMPLE.read_text().replace('"sqlite:///var/crm.sqlite3"', f'"{url}"'))
    return path


def db_upgrade(capsys, config: Path) -> tuple[int, str, str]:
    code = main(["db", "upgrade", "-c", str(config)])
    out, err = capsys.readouterr()
    return code, out, err


def test_upgrade_of_an_older_sqlite_database_says_from_which_revision_to_which(tmp_path: Path, capsys) -> None:
    url = f"sqlite:///{tmp_path}/crm.sqlite3"
    migrate_to(url, "0003_web_users")
    config = config_for(tmp_path, url)

    first = db_upgrade(capsys, config)
    again = db_upgrade(capsys, config)

    assert first == (0, f"sqlite+pysqlite:///{tmp_path}/crm.sqlite3: upgraded from revision 0003_web_users to {HEAD}\n", "")
    assert again == (0, f"sqlite+pysqlite:///{tmp_path}/crm.sqlite3: already at revision {HEAD}\n", "")


def test_upgrade_of_an_empty_postgresql_database_runs_every_migration(
    tmp_path: Path, capsys, postgresql: PostgresServer
) -> None:
    url = postgresql.create_database(migrated=False)
    code, out, _ = db_upgrade(capsys, config_for(tmp_path, url))

    engine = create_engine(database_url(url))
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert code == 0 and out.endswith(f": upgraded from revision (empty database) to {HEAD}\n")
    assert {"leads", "contacts", "companies", "deals", "phones", "calls", "offers", "web_users"} <= tables


@pytest.mark.parametrize("password", ["", ":s3cret-db"], ids=["no-password", "password-in-url"])
def test_unreachable_database_server_fails_with_the_reason_and_no_password(tmp_path: Path, capsys, password: str) -> None:
    url = f"postgresql://crm{password}@127.0.0.1:{closed_port()}/crm"

    code, out, err = db_upgrade(capsys, config_for(tmp_path, url))

    assert code == 1 and out == ""
    assert err.startswith("agi-daemon: cannot upgrade the CRM database postgresql+psycopg://crm") and "refused" in err
    assert "s3cret" not in err
