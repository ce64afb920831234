"""Outbox claims: which daemon is delivering a command to a remote CRM, and until when.

Several daemons (one per PBX) share one PostgreSQL database and drain one outbox. A daemon
that sends a command to a remote CRM claims the row first (`claimed_by`, `claimed_until`); a
claim that outlives its lease belongs to a daemon that died, and another daemon takes it.

Revision ID: 0006_outbox_claims
Revises: 0005_outbox
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_outbox_claims"
down_revision = "0005_outbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_outbox_lane_status_id", "outbox", ["lane", "status", "id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_lane_status_id", "outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("claimed_until")
        batch.drop_column("claimed_by")
