"""Embedded CRM databases for tests: an empty one (for commands that only read one: they never
create it), or one as an older version of the daemon left it."""
from __future__ import annotations

import asyncio
from pathlib import Path

from agi_daemon.crm.embedded import EmbeddedCrm


def create_database(file: Path) -> None:
    async def create() -> None:
        async with EmbeddedCrm(f"sqlite:///{file}"):
            pass

    asyncio.run(create())


def migration_head() -> str:
    """The latest migration (one head: the migrations form a single line)."""
    from alembic.script import ScriptDirectory

    from agi_daemon.crm.migrations import alembic_config

    (head,) = ScriptDirectory.from_config(alembic_config()).get_heads()
    return head


def migrate_to(url: str, revision: str) -> None:
    """The database at `url` brought to `revision` migration by migration (a database as an
    older version of the daemon left it, or every migration replayed)."""
    from alembic import command
    from sqlalchemy import create_engine

    from agi_daemon.crm.database import database_url
    from agi_daemon.crm.migrations import alembic_config

    engine = create_engine(database_url(url))
    try:
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()
