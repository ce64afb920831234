"""Fewer index entries written per new caller.

A new caller's records are committed before the call is answered, and the commit's cost is
the pages it writes. Two indexes wrote entries nothing reads:
- `ix_leads_created_by_call` repeats the first column of the unique constraint
  (created_by_call, created_by_call_phone), which serves the same searches;
- `ix_outbox_lane_status_id` is only searched for the pending rows of a lane, while most rows
  are stored as delivered at once (the embedded CRM's direct path): it now holds pending rows
  only (a partial index), and a row stored delivered writes no entry in it;
- on SQLite, `call_ledger` (keyed by the call's linkedid) kept its rows in a rowid table and
  their keys in a second B-tree: it is rebuilt WITHOUT ROWID, the rows in their key's B-tree.

Revision ID: 0008_fewer_index_writes
Revises: 0007_longer_linkedids
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_fewer_index_writes"
down_revision = "0007_longer_linkedids"
branch_labels = None
depends_on = None

PENDING_ONLY = sa.text("status = 'pending'")


def _ledger_with_rowid(with_rowid: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("call_ledger", recreate="always",
                              table_kwargs={"sqlite_with_rowid": with_rowid}):
        pass  # the table is copied into its new form, rows included


def upgrade() -> None:
    _ledger_with_rowid(False)
    op.drop_index("ix_leads_created_by_call", table_name="leads")
    op.drop_index("ix_outbox_lane_status_id", table_name="outbox")
    op.create_index("ix_outbox_lane_status_id", "outbox", ["lane", "status", "id"],
                    sqlite_where=PENDING_ONLY, postgresql_where=PENDING_ONLY)


def downgrade() -> None:
    op.drop_index("ix_outbox_lane_status_id", table_name="outbox")
    op.create_index("ix_outbox_lane_status_id", "outbox", ["lane", "status", "id"])
    op.create_index("ix_leads_created_by_call", "leads", ["created_by_call"])
    _ledger_with_rowid(True)
