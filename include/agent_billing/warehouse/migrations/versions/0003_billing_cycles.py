"""Billing cycles: the invoice run of a contract's month happened, even when it posted nothing.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

A contract is invoiced once a month, by the first run on or after its invoice date. When that
run has nothing to post there is no invoice to show it happened, and the next run the same
month would post as if it were the invoice run; this row records it instead.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "billing_cycles",
        sa.Column("contract_id", sa.Text, sa.ForeignKey("contracts.contract_id"), primary_key=True),
        sa.Column("invoice_month", sa.Date, primary_key=True),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("invoice_id", sa.Text),  # NULL: the run had nothing to post
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.text("CURRENT_TIMESTAMP")),
    )


def downgrade() -> None:
    op.drop_table("billing_cycles")
