"""Linkedids as long as Asterisk makes them, namespaced by a pbx_id.

An Asterisk linkedid is the first channel's uniqueid: "1700000000.12" by default, but prefixed
by asterisk.conf's `systemname` when one is set, and anything up to 149 characters when a
channel is originated with an explicit id. Stored as "<pbx_id>:<linkedid>" (pbx_id up to 32)
it overflowed the 64 characters these columns held, and PostgreSQL refused the call's records
and log (SQLite does not check lengths). The outbox's key and lane embed the linkedid too.

Revision ID: 0007_longer_linkedids
Revises: 0006_outbox_claims
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_longer_linkedids"
down_revision = "0006_outbox_claims"
branch_labels = None
depends_on = None

LINKEDID, KEY, LANE = 192, 320, 200  # as agi_daemon.crm.tables has them

WIDER = {  # table -> {column: (old length, new length)}
    "leads": {"created_by_call": (64, LINKEDID)},
    "contacts": {"created_by_call": (64, LINKEDID)},
    "companies": {"created_by_call": (64, LINKEDID)},
    "deals": {"created_by_call": (64, LINKEDID)},
    "calls": {"linkedid": (64, LINKEDID)},
    "offers": {"linkedid": (64, LINKEDID)},
    "outbox": {"linkedid": (64, LINKEDID), "key": (200, KEY), "lane": (80, LANE)},
    "call_ledger": {"linkedid": (64, LINKEDID)},
}


def _alter(to_new: bool) -> None:
    for table, columns in WIDER.items():
        with op.batch_alter_table(table) as batch:  # SQLite: the table is rebuilt
            for column, (old, new) in columns.items():
                before, after = (old, new) if to_new else (new, old)
                batch.alter_column(column, existing_type=sa.String(before), type_=sa.String(after))


def upgrade() -> None:
    _alter(to_new=True)


def downgrade() -> None:
    _alter(to_new=False)
