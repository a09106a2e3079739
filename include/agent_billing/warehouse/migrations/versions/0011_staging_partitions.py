"""The night's staging partitioned by date on PostgreSQL: the retention drops a night whole.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

Issue 10. ``vsa_agents``, ``vsa_view_members`` and ``service_agents`` hold every night's full
snapshot for the retention period (1M agents: about 3.3M rows a night). Past the retention,
each night deleted the 3.3M rows of the night leaving it (1.6 s at 1M agents, then as much
again for vacuum), and a date's reads went through a BRIN index that only narrows them once its
ranges are summarized. Each table becomes partitioned by ``snapshot_date`` (LIST), one partition
per date (``<table>_YYYYMMDD``, created by ``warehouse.staging`` as a night is written): a
date's reads touch its partition only, a re-load empties it, the retention drops it. The BRIN
indexes go; ``vsa_view_members`` keeps its unique key on the parent. ``service_agents``'
partitions are UNLOGGED as the table was (migration 0009). Existing rows move into their
dates' partitions. SQLite keeps plain tables.
"""

from alembic import op
from sqlalchemy import text

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TABLES = {"vsa_agents": False, "vsa_view_members": False, "service_agents": True}  # table: unlogged


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute("DROP INDEX ix_vsa_agents_date")
    op.execute("DROP INDEX ix_service_agents_date")
    op.execute("DROP INDEX ux_vsa_view_members")
    for table, unlogged in TABLES.items():
        op.execute(f"ALTER TABLE {table} RENAME TO {table}_unpartitioned")
        op.execute(
            f"CREATE TABLE {table} (LIKE {table}_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
            "PARTITION BY LIST (snapshot_date)"
        )
        if table == "vsa_view_members":
            op.execute("CREATE UNIQUE INDEX ux_vsa_view_members ON vsa_view_members (snapshot_date, view_id, agent_id)")
        dates = bind.execute(text(f"SELECT DISTINCT snapshot_date FROM {table}_unpartitioned ORDER BY 1")).scalars()
        for day in list(dates):
            name = f"{table}_{day:%Y%m%d}"
            op.execute(
                f"CREATE {'UNLOGGED ' if unlogged else ''}TABLE {name} "
                f"(LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
            )
            op.execute(f"INSERT INTO {name} SELECT * FROM {table}_unpartitioned WHERE snapshot_date = '{day.isoformat()}'")
            op.execute(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES IN ('{day.isoformat()}')")
        op.execute(f"DROP TABLE {table}_unpartitioned")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table, unlogged in TABLES.items():
        op.execute(f"ALTER TABLE {table} RENAME TO {table}_partitioned")
        op.execute(
            f"CREATE {'UNLOGGED ' if unlogged else ''}TABLE {table} "
            f"(LIKE {table}_partitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        op.execute(f"INSERT INTO {table} SELECT * FROM {table}_partitioned")
        op.execute(f"DROP TABLE {table}_partitioned")  # with its partitions and their indexes
    op.execute("CREATE UNIQUE INDEX ux_vsa_view_members ON vsa_view_members (snapshot_date, view_id, agent_id)")
    op.execute("CREATE INDEX ix_vsa_agents_date ON vsa_agents USING brin (snapshot_date) WITH (pages_per_range = 16)")
    op.execute(
        "CREATE INDEX ix_service_agents_date ON service_agents USING brin (snapshot_date) WITH (pages_per_range = 16)"
    )
