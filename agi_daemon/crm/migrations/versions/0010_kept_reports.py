"""Hangup reports kept while their call's CRM work runs.

A call routed `fallback` (its caller's lookup past the deadline) looks its caller up again in
the background; when it hangs up before that lookup ends, its hangup report waits in memory
for it. A daemon killed then lost the call: its records and its log. The report is now kept
in `kept_reports` until the call is logged, and the next start logs what is left there.

Revision ID: 0010_kept_reports
Revises: 0009_page_indexes
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_kept_reports"
down_revision = "0009_page_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kept_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pbx", sa.String(32), nullable=False),
        sa.Column("linkedid", sa.String(192), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("kept_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_kept_reports"),
        sa.UniqueConstraint("pbx", "linkedid", name="uq_kept_reports_pbx_linkedid"),
    )


def downgrade() -> None:
    op.drop_table("kept_reports")
