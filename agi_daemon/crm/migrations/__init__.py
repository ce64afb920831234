"""Schema migrations of the embedded CRM, run from code (there is no alembic.ini)."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, create_engine
from sqlalchemy.pool import NullPool

from ..database import WRITE, tune_sqlite


def alembic_config() -> Config:
    """Alembic's configuration, pointing at this package's scripts."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.set_main_option("path_separator", "os")
    return config


def upgrade_to_head(url: URL, busy_timeout_ms: int = 5000) -> None:
    """Bring the CRM database at `url` (a `database.database_url`) to the latest schema.
    Blocking: run it in a worker thread.

    One transaction (on SQLite it takes the write lock first), so two daemons starting on
    the same database migrate one after the other; a database already at head is untouched.
    """
    engine = create_engine(url, poolclass=NullPool)
    tune_sqlite(engine, busy_timeout_ms)
    try:
        with engine.execution_options(**WRITE).begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()
