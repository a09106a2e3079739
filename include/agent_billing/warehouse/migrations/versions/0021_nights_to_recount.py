"""The synced nights a contracts change left without a count, kept until they are re-run.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06

Issue 10. A change to the contracts file can make a counted service countable on nights
already synced (a service starting in the past, a start moved earlier, an end moved later):
those nights have no count, and billing would take their days at the units of another night.
``contracts apply`` names them and now also records them here (those a re-run can count); the
night's next count deletes them, and posting an invoice of the service's contract is refused
while one is left (``billing.post``). Warehouses upgraded to this revision start empty: nights
named by an earlier apply are not recorded.
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nights_to_recount",
        sa.Column("service_id", sa.Text, sa.ForeignKey("services.service_id"), primary_key=True),
        sa.Column("snapshot_date", sa.Date, primary_key=True),
        sa.Column("noted_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.text("CURRENT_TIMESTAMP")),
    )
    op.create_index("ix_nights_to_recount_date", "nights_to_recount", ["snapshot_date"])


def downgrade() -> None:
    op.drop_table("nights_to_recount")
