"""``staged_dates``: the life of each date's staging, so the retention drops only what is settled.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03

Issue 10. The retention dropped the staging of every date older than its cutoff that was merged
into the histories or discarded. A re-run of an already merged old date (a backfill of a
corrected landing, a cleared task) loads fresh staging, and another night's count could drop
it between that load and its gate: the gate then failed with no rows, or a count run alone
counted nothing. ``staged_dates`` has one row per date that was ever staged: ``stage`` is
``loaded`` (written by a load, not yet merged: kept), ``settled`` (merged or discarded since its
last load: the retention may drop it) or ``dropped`` (gone; a count of it is refused), and
``loads`` counts the loads, so a prune that looked before a new load never forgets the new one.

Existing dates: staged ones are ``settled`` when merged or discarded and ``loaded`` otherwise;
merged or discarded dates with no staging left are ``dropped``.
"""

from datetime import date

import sqlalchemy as sa
from alembic import op
from sqlalchemy import text

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

STAGING_TABLES = ("vsa_agents", "vsa_view_members", "service_agents")


def upgrade() -> None:
    op.create_table(
        "staged_dates",
        sa.Column("snapshot_date", sa.Date, primary_key=True),
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("loads", sa.Integer, nullable=False),
        sa.CheckConstraint("stage IN ('loaded', 'settled', 'dropped')", name="ck_staged_dates_stage"),
    )
    bind = op.get_bind()
    staged = set()
    for table in STAGING_TABLES:
        if bind.dialect.name == "postgresql":  # one partition per date: its name, not its rows
            names = bind.execute(text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = CAST(:t AS regclass)"), {"t": table}).scalars()
            staged |= {f"{n[-8:-4]}-{n[-4:-2]}-{n[-2:]}" for n in names}
        else:
            staged |= {str(d)[:10] for d in bind.execute(text(f"SELECT DISTINCT snapshot_date FROM {table}")).scalars()}
    settled = {str(d)[:10] for d in bind.execute(text(
        "SELECT snapshot_date FROM history_dates "
        "UNION SELECT snapshot_date FROM sync_runs WHERE status = 'discarded'")).scalars()}
    rows = [{"d": d, "stage": "settled" if d in settled else "loaded"} for d in sorted(staged)]
    rows += [{"d": d, "stage": "dropped"} for d in sorted(settled - staged)]
    if rows:
        bind.execute(
            text("INSERT INTO staged_dates (snapshot_date, stage, loads) VALUES (:d, :stage, 1)"),
            [{**row, "d": date.fromisoformat(row["d"])} for row in rows],
        )


def downgrade() -> None:
    op.drop_table("staged_dates")
