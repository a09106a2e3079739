"""Exact money on both engines: integer ten-thousandths beside every NUMERIC money column.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

SQLite stores NUMERIC as binary floating point, so ``SUM(amount)`` there adds floats. The
billing code writes ``amount_e4`` (= amount × 10 000, an integer) with every line, likewise
``unit_price_e4`` and ``invoices.total_e4``; integer sums are exact on both engines. The
NUMERIC columns stay as they are for reading. PostgreSQL also checks that both agree.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# table -> (integer column, NUMERIC column it mirrors)
COLUMNS = {
    "invoice_lines": (("amount_e4", "amount"), ("unit_price_e4", "unit_price")),
    "billing_pending": (("amount_e4", "amount"), ("unit_price_e4", "unit_price")),
    "invoices": (("total_e4", "total"),),
}
REVIEW_VIEW = """
CREATE VIEW billing_review AS
SELECT p.line_id, p.contract_id, c.posting, p.service_id, p.kind, p.period_start,
       p.period_end, p.units, p.unit_price, p.days, p.days_in_period, p.amount,
       p.change_id, p.adjusts_line_id, p.description, p.as_of, p.computed_at{extra}
FROM billing_pending p
JOIN contracts c ON c.contract_id = p.contract_id
"""


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, pairs in COLUMNS.items():
        for column, numeric in pairs:
            op.add_column(table, sa.Column(column, sa.BigInteger))
            op.execute(f"UPDATE {table} SET {column} = CAST(ROUND({numeric} * 10000) AS BIGINT)")
            if postgres:
                op.alter_column(table, column, nullable=False)
        if postgres:
            agree = " AND ".join(f"{numeric} * 10000 = {column}" for column, numeric in pairs)
            op.create_check_constraint(f"ck_{table}_e4", table, agree)
    op.execute("DROP VIEW billing_review")
    op.execute(REVIEW_VIEW.format(extra=", p.amount_e4, p.unit_price_e4"))


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.execute("DROP VIEW billing_review")
    op.execute(REVIEW_VIEW.format(extra=""))
    for table, pairs in COLUMNS.items():
        if postgres:
            op.drop_constraint(f"ck_{table}_e4", table, type_="check")
        for column, _ in pairs:
            op.drop_column(table, column)
