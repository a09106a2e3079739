"""A contract's pending lines are dated once, in ``billing_pending_runs``, not on every line.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06

Issue 10. A nightly run keeps the pending lines of the services nothing changed for
(``billing.settled``), and they are its lines as of its date. With that date on every line
(``billing_pending.as_of``), keeping a line still rewrote its row: on 15 December an ``UPDATE``
of a fortnight of lines, about half of what that night cost more than 2 January. The date now
has one row per contract with pending lines (``billing_pending_runs``: ``as_of`` and when that
run ran), written by the run that writes or keeps them; ``billing_pending.as_of`` is dropped.
``billing_review`` keeps its columns: its ``as_of`` comes from the new table. On PostgreSQL the
view is replaced in place (``CREATE OR REPLACE``), so its grants and the views built on it stay.
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

REVIEW_VIEW = """
CREATE {replace}VIEW billing_review AS
SELECT p.line_id, p.contract_id, c.posting, p.service_id, p.kind, p.period_start,
       p.period_end, p.units, p.unit_price, p.days, p.days_in_period, p.amount,
       p.change_id, p.adjusts_line_id, p.description, {as_of} AS as_of, p.computed_at,
       p.amount_e4, p.unit_price_e4
FROM billing_pending p
JOIN contracts c ON c.contract_id = p.contract_id{join}
"""


def upgrade() -> None:
    op.create_table(
        "billing_pending_runs",
        sa.Column("contract_id", sa.Text, sa.ForeignKey("contracts.contract_id"), primary_key=True),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("ran_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.text("CURRENT_TIMESTAMP")),
    )
    op.execute(
        "INSERT INTO billing_pending_runs (contract_id, as_of, ran_at) "
        "SELECT contract_id, MAX(as_of), MAX(computed_at) FROM billing_pending GROUP BY contract_id"
    )
    # LEFT: a line without its contract's date would still show (as_of NULL), never vanish
    _review_view("r.as_of", "\nLEFT JOIN billing_pending_runs r ON r.contract_id = p.contract_id")
    op.execute("ALTER TABLE billing_pending DROP COLUMN as_of")


def downgrade() -> None:
    op.add_column("billing_pending", sa.Column("as_of", sa.Date))
    op.execute(
        "UPDATE billing_pending SET as_of = (SELECT r.as_of FROM billing_pending_runs r "
        "WHERE r.contract_id = billing_pending.contract_id)"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("billing_pending", "as_of", nullable=False)
    _review_view("p.as_of", "")
    op.drop_table("billing_pending_runs")


def _review_view(as_of: str, join: str) -> None:
    """``billing_review`` with the same columns, its ``as_of`` from ``as_of``. PostgreSQL replaces
    it in place (its grants and dependent views stay); SQLite has no ``OR REPLACE``."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(REVIEW_VIEW.format(replace="OR REPLACE ", as_of=as_of, join=join))
        return
    op.execute("DROP VIEW billing_review")
    op.execute(REVIEW_VIEW.format(replace="", as_of=as_of, join=join))
