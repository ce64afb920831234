"""An empty embedded CRM database, for commands that only read one (they never create it)."""
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
