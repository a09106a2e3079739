"""``billing_stale`` loses its contract index: the trigger's writes append to the table.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05

Issue 10. Every unit change written adds a ``billing_stale`` row (migration 0014). With an index
on ``contract_id`` each row was also an insert into that contract's part of the index, a page
of its own per contract: on SQLite, a night's re-derivation after a year of changes no billing
run had consumed took 1.4 × the second night's (benchmark "Unit history"), against 1.1 ×
without the index. Without it a row only appends to the table. A billing run reads the whole
table once (``billing.settled.read_stale``: it holds what was written since the runs before)
and gives each contract its rows; the preview and review posting, one contract each, read it
whole too.
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_billing_stale_contract", table_name="billing_stale")


def downgrade() -> None:
    op.create_index("ix_billing_stale_contract", "billing_stale", ["contract_id"])
