"""Alembic environment of the embedded CRM.

Migrations run on the connection that `agi_daemon.crm.migrations.upgrade_to_head` opens and
hands over in `config.attributes["connection"]`; there is no alembic.ini.
"""
from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
