"""The embedded CRM: leads, contacts, companies, deals, the phone index, calls and offers.

Revision ID: 0001
Revises:
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

RECORDS = ("contacts", "companies", "deals", "leads")


def _record_columns() -> list[sa.Column]:
    return [
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("responsible", sa.String(64), nullable=True),
        sa.Column("source", sa.String(64), nullable=True),
        sa.Column("created_by_call", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "contacts", *_record_columns(), sa.PrimaryKeyConstraint("id", name="pk_contacts")
    )
    op.create_table(
        "companies", *_record_columns(), sa.PrimaryKeyConstraint("id", name="pk_companies")
    )
    op.create_table(
        "deals",
        *_record_columns(),
        sa.Column("pipeline", sa.String(64), nullable=False),
        sa.Column("stage", sa.String(64), server_default="NEW", nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("company_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_deals"),
        sa.ForeignKeyConstraint(
            ["contact_id"], ["contacts.id"], name="fk_deals_contact_id_contacts"
        ),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name="fk_deals_company_id_companies"
        ),
    )
    op.create_table(
        "leads",
        *_record_columns(),
        sa.Column("status", sa.String(16), server_default="NEW", nullable=False),
        sa.Column("created_by_call_phone", sa.String(32), nullable=True),
        sa.Column("converted_contact_id", sa.Integer(), nullable=True),
        sa.Column("converted_company_id", sa.Integer(), nullable=True),
        sa.Column("converted_deal_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_leads"),
        sa.UniqueConstraint(
            "created_by_call",
            "created_by_call_phone",
            name="uq_leads_created_by_call_created_by_call_phone",
        ),
        sa.ForeignKeyConstraint(
            ["converted_contact_id"], ["contacts.id"], name="fk_leads_converted_contact_id_contacts"
        ),
        sa.ForeignKeyConstraint(
            ["converted_company_id"],
            ["companies.id"],
            name="fk_leads_converted_company_id_companies",
        ),
        sa.ForeignKeyConstraint(
            ["converted_deal_id"], ["deals.id"], name="fk_leads_converted_deal_id_deals"
        ),
    )
    for table in RECORDS:
        op.create_index(f"ix_{table}_created_by_call", table, ["created_by_call"])

    op.create_table(
        "phones",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entity_type", sa.String(16), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("e164", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_phones"),
    )
    op.create_index("ix_phones_e164", "phones", ["e164"])
    op.create_index("ix_phones_entity_type_entity_id", "phones", ["entity_type", "entity_id"])

    op.create_table(
        "calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("linkedid", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("line", sa.String(32), nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("disposition", sa.String(16), nullable=False),
        sa.Column("answered_by", sa.String(64), nullable=True),
        sa.Column("employees", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ring_seconds", sa.Float(), nullable=False),
        sa.Column("talk_seconds", sa.Float(), nullable=False),
        sa.Column("transfers", sa.Text(), nullable=False),
        sa.Column("entity_type", sa.String(16), nullable=True),
        sa.Column("entity_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_calls"),
        sa.UniqueConstraint("linkedid", name="uq_calls_linkedid"),
    )
    op.create_index("ix_calls_number", "calls", ["number"])

    op.create_table(
        "offers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("linkedid", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("line", sa.String(32), nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("employees", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), server_default="open", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_offers"),
        sa.UniqueConstraint("linkedid", name="uq_offers_linkedid"),
    )
    op.create_index("ix_offers_phone", "offers", ["phone"])


def downgrade() -> None:
    op.drop_table("offers")
    op.drop_table("calls")
    op.drop_table("phones")
    op.drop_table("leads")
    op.drop_table("deals")
    op.drop_table("companies")
    op.drop_table("contacts")
