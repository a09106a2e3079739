"""sync_runs carries the night's scope report and the digest of the landing it was loaded from.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

SPEC 4.1: a service whose VSA org, machine group or view is missing from the snapshot is a
mistake, not zero units; every nightly sync reports it, and a scope that exists but counts 0
is shown too. Both lists are one-line messages, stored as JSON arrays of text.
``landing_sha256`` is the digest of the manifest of the landing a complete date was loaded
from: a re-run of that date loads only the same landing (issue 11: posted history is immutable).
The staged view members get a unique key (duplicates left by concurrent loads before this
revision are removed first).
"""

import sqlalchemy as sa
from alembic import op

# A date's staged view members, unique: two loads of one date can never double them (issue 11).
VIEW_MEMBERS_KEY = ("snapshot_date", "view_id", "agent_id")

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.add_column(sa.Column("scope_problems", sa.Text))
        batch.add_column(sa.Column("zero_count_services", sa.Text))
        batch.add_column(sa.Column("landing_sha256", sa.Text))
    row = "ctid" if op.get_bind().dialect.name == "postgresql" else "rowid"
    same = " AND ".join(f"a.{c} = b.{c}" for c in VIEW_MEMBERS_KEY)
    op.execute(
        f"DELETE FROM vsa_view_members WHERE {row} IN (SELECT a.{row} FROM vsa_view_members a "
        f"JOIN vsa_view_members b ON {same} AND b.{row} < a.{row})"
    )
    op.drop_index("ix_vsa_view_members", table_name="vsa_view_members")
    op.create_index("ux_vsa_view_members", "vsa_view_members", list(VIEW_MEMBERS_KEY), unique=True)


def downgrade() -> None:
    op.drop_index("ux_vsa_view_members", table_name="vsa_view_members")
    op.create_index("ix_vsa_view_members", "vsa_view_members", list(VIEW_MEMBERS_KEY))
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_column("landing_sha256")
        batch.drop_column("zero_count_services")
        batch.drop_column("scope_problems")
