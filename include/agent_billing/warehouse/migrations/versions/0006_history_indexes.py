"""Indexes by date for the unit history: a night reads only the dates it needs.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-02

``service_unit_counts`` and ``units_now_readings`` are keyed by service first, and
``unit_changes`` by id: every per-date read and delete of the nightly diff, a release, a
discard or a Get Units Now press scanned the whole history. With these indexes each of them
is an index range over the dates it touches (issue 10).
"""

from alembic import op

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_service_unit_counts_date", "service_unit_counts", ["snapshot_date"]),
    ("ix_units_now_readings_date", "units_now_readings", ["observed_date"]),
    ("ix_unit_changes_effective_date", "unit_changes", ["effective_date"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in INDEXES:
        op.drop_index(name, table_name=table)
