"""Every change ``contracts apply`` makes, kept: who bills what, and since when, has a history.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07

Issue 10 (reviews). ``accounts``, ``contracts`` and ``services`` hold the file as last applied,
so a credit that a back-dated end date caused could not be traced to the apply that made it:
finance could show the credit, not its cause. ``contracts apply`` now writes one row per field
it changes (``update``, and the ``end`` of ``--prune``), and one per entry it creates, with the
file and line. Rows are only ever added. Warehouses upgraded to this revision start empty:
edits applied before it are not recorded (their effect is in the tables as they are).
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contract_edits",
        sa.Column("edit_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("line", sa.Integer),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("entity_id", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("field", sa.Text),
        sa.Column("old_value", sa.Text),
        sa.Column("new_value", sa.Text),
        sa.Column("effective_date", sa.Date),  # a manual service's units: the day they take effect
        sa.CheckConstraint("kind IN ('account', 'contract', 'service')", name="ck_contract_edits_kind"),
        sa.CheckConstraint("action IN ('create', 'update', 'end')", name="ck_contract_edits_action"),
    )
    op.create_index("ix_contract_edits_entity", "contract_edits", ["entity_id", "applied_at"])


def downgrade() -> None:
    op.drop_table("contract_edits")
