"""Phones: look a number up through one index that holds everything the lookup needs.

The lookup asks "which contact, company or lead has this number": with an index on
(e164, entity_type, entity_id) it is one seek whatever the size of the CRM. The former
single-column index on e164 is its prefix, so it goes.

Revision ID: 0004
Revises: 0003_web_users
"""
from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003_web_users"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_phones_e164_entity_type_entity_id", "phones", ["e164", "entity_type", "entity_id"])
    op.drop_index("ix_phones_e164", "phones")


def downgrade() -> None:
    op.create_index("ix_phones_e164", "phones", ["e164"])
    op.drop_index("ix_phones_e164_entity_type_entity_id", "phones")
