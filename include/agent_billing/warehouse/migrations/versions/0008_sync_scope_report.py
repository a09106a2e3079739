"""sync_runs carries the night's scope report and the digest of the landing it was loaded from.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

SPEC 4.1: a service whose VSA org, machine group or view is missing from the snapshot is a
mistake, not zero units; every nightly sync reports it, and a scope that exists but counts 0
is shown too. Both lists are one-line messages, stored as JSON arrays of text.
``landing_sha256`` is the digest of the manifest of the landing a complete date was loaded
from: a re-run of that date loads only the same landing (issue 11: posted history is immutable).
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.add_column(sa.Column("scope_problems", sa.Text))
        batch.add_column(sa.Column("zero_count_services", sa.Text))
        batch.add_column(sa.Column("landing_sha256", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_column("landing_sha256")
        batch.drop_column("zero_count_services")
        batch.drop_column("scope_problems")
