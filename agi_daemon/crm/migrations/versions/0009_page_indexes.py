"""Indexes for what the web pages read most, so they do not read whole tables as the CRM grows.

- the call log, newest first (every page load; an agent's own list walks this index from the
  newest call and stops at a page of theirs), and the admin page's calls per hour over the
  last 24 hours: `calls.started_at`;
- a record's page, its calls: `calls(entity_id, entity_type)` (the id first: the type alone has
  a handful of values);
- a deal's contact and company (a deal found by its contact's or company's phone):
  `deals.contact_id`, `deals.company_id`.
Each logged call writes two index entries more; the call path's own statements are unchanged.

Revision ID: 0009_page_indexes
Revises: 0008_fewer_index_writes
"""
from __future__ import annotations

from alembic import op

revision = "0009_page_indexes"
down_revision = "0008_fewer_index_writes"
branch_labels = None
depends_on = None

INDEXES = {  # name -> (table, columns), as agi_daemon.crm.tables declares them
    "ix_calls_started_at": ("calls", ["started_at"]),
    "ix_calls_entity_id_entity_type": ("calls", ["entity_id", "entity_type"]),
    "ix_deals_contact_id": ("deals", ["contact_id"]),
    "ix_deals_company_id": ("deals", ["company_id"]),
}


def upgrade() -> None:
    for name, (table, columns) in INDEXES.items():
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, (table, _) in INDEXES.items():
        op.drop_index(name, table_name=table)
