"""The outbox and the call ledger: every CRM write is committed here first, then delivered.

`outbox` holds each command a call asks of the CRM (create records, an offer, the call log, a
new responsible), keyed by its idempotency key, until it is delivered or becomes a dead
letter. `call_ledger` remembers, per call, what its commands created and their remote ids.

Revision ID: 0005_outbox
Revises: 0004
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_outbox"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("lane", sa.String(80), nullable=False),
        sa.Column("linkedid", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("key", name="uq_outbox_key"),
    )
    op.create_index("ix_outbox_status_id", "outbox", ["status", "id"])
    op.create_table(
        "call_ledger",
        sa.Column("linkedid", sa.String(64), nullable=False),
        sa.Column("created", sa.Text(), nullable=True),
        sa.Column("joined", sa.String(32), nullable=True),
        sa.Column("remote_ids", sa.Text(), nullable=True),
        sa.Column("remote_call_id", sa.String(128), nullable=True),
        sa.Column("logged", sa.String(16), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("linkedid", name="pk_call_ledger"),
    )


def downgrade() -> None:
    op.drop_table("call_ledger")
    op.drop_index("ix_outbox_status_id", "outbox")
    op.drop_table("outbox")
