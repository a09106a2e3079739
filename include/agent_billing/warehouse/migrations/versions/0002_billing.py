"""Billing: per-contract indexes on the posted and pending ledgers.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

A billing run reconciles one contract at a time and reads that contract's posted lines and
replaces its pending lines; without these indexes each contract would scan every line.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_invoice_lines_contract", "invoice_lines", ["contract_id"])
    op.create_index("ix_billing_pending_contract", "billing_pending", ["contract_id"])


def downgrade() -> None:
    op.drop_index("ix_billing_pending_contract", table_name="billing_pending")
    op.drop_index("ix_invoice_lines_contract", table_name="invoice_lines")
