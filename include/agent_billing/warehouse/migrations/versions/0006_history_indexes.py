"""The unit history reads by date; agent and scope membership kept as validity intervals.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Issue 10. ``service_unit_counts`` and ``units_now_readings`` are keyed by service first and
``unit_changes`` by id: every per-date read and delete of a night scanned the whole history.
Indexes by date make each of them an index range over the dates it touches.

Every night copied the whole snapshot (1M agents: ~1M ``vsa_agents`` and ~2.3M
``service_agents`` rows). The per-date tables become the night's staging (kept for
``AGENT_BILLING_SNAPSHOT_RETENTION_DAYS``); what lasts is kept as validity intervals
(``valid_from`` inclusive, ``valid_to`` exclusive, NULL = still valid) over the merged dates
of ``history_dates``: ``vsa_agent_history``, ``vsa_view_member_history`` and
``service_agent_history``. Existing per-date rows are converted here (gaps and islands over
the merged dates, one INSERT ... SELECT per table, both engines).
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_service_unit_counts_date", "service_unit_counts", ["snapshot_date", "service_id", "units"]),  # covering
    ("ix_units_now_readings_date", "units_now_readings", ["observed_date"]),
    ("ix_unit_changes_effective_date", "unit_changes", ["effective_date"]),
)
# table: (id columns, attribute columns, per-date source)
HISTORIES = {
    "vsa_agent_history": (
        ("agent_id",), ("agent_name", "org_id", "machine_group_id", "never_checked_in"),
        "SELECT snapshot_date, agent_id, agent_name, org_id, machine_group_id, "
        "COALESCE(online, 0) = 199 AS never_checked_in FROM vsa_agents WHERE agent_id IS NOT NULL",
    ),
    "vsa_view_member_history": (
        ("view_id", "agent_id"), (), "SELECT snapshot_date, view_id, agent_id FROM vsa_view_members",
    ),
    "service_agent_history": (
        ("service_id", "agent_id"), (), "SELECT snapshot_date, service_id, agent_id FROM service_agents",
    ),
}
TYPES = {"never_checked_in": sa.Boolean}


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)
    op.create_table("history_dates", sa.Column("snapshot_date", sa.Date, primary_key=True))
    for table, (ids, attributes, _) in HISTORIES.items():
        op.create_table(
            table,
            *[sa.Column(c, sa.Text, primary_key=True) for c in ids],
            *[sa.Column(c, TYPES.get(c, sa.Text)) for c in attributes],
            sa.Column("valid_from", sa.Date, primary_key=True),
            sa.Column("valid_to", sa.Date),
            sa.CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name=f"ck_{table}_interval"),
        )
        op.create_index(f"ix_{table}_valid_from", table, ["valid_from"])
        op.create_index(f"ix_{table}_valid_to", table, ["valid_to"])
    _convert()


def _convert() -> None:
    """Per-date rows into intervals: the merged dates are the counted ones; a key's run over
    consecutive merged dates (rank minus its row number is constant) becomes one interval."""
    op.execute(
        "INSERT INTO history_dates (snapshot_date) SELECT snapshot_date FROM service_unit_counts "
        "UNION SELECT snapshot_date FROM service_agents"
    )
    ranked = "SELECT snapshot_date, ROW_NUMBER() OVER (ORDER BY snapshot_date) AS r FROM history_dates"
    for table, (ids, attributes, source) in HISTORIES.items():
        key = ", ".join(ids + attributes)
        op.execute(f"""
            INSERT INTO {table} ({key}, valid_from, valid_to)
            WITH dates AS ({ranked}),
            rows_ AS (
                SELECT {key}, d.snapshot_date, d.r,
                       d.r - ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY d.r) AS island
                FROM ({source}) s JOIN dates d ON d.snapshot_date = s.snapshot_date
            ),
            runs AS (
                SELECT {key}, MIN(snapshot_date) AS valid_from, MAX(r) AS last_r
                FROM rows_ GROUP BY {key}, island
            )
            SELECT {key}, runs.valid_from, nxt.snapshot_date
            FROM runs LEFT JOIN dates nxt ON nxt.r = runs.last_r + 1
        """)


def downgrade() -> None:
    for table in HISTORIES:
        op.drop_table(table)
    op.drop_table("history_dates")
    for name, table, _ in INDEXES:
        op.drop_index(name, table_name=table)
