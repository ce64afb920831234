"""Web users: the call window's passwords, hashed, one per employee of the YAML file.

Revision ID: 0003_web_users
Revises: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_web_users"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_users",
        sa.Column("employee", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("employee", name="pk_web_users"),
    )


def downgrade() -> None:
    op.drop_table("web_users")
