"""The night's staging written at the speed of a COPY: block-range indexes, service_agents unlogged.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

Issue 10. The per-date staging tables are written once per night, in date order, and read one
date at a time. A B-tree on them cost more than the write itself (1M agents: ~1M
``vsa_agents`` and ~2.3M ``service_agents`` index entries a night). On PostgreSQL they are
indexed by a BRIN on ``snapshot_date`` instead (a night's rows are appended together, so a
date is a few block ranges), and ``service_agents``, which the count writes and reads inside
one transaction and merges into ``service_agent_history`` (what lasts), is UNLOGGED: no WAL,
and a server crash that empties it loses nothing that is not in the history. SQLite keeps
its B-trees (its staging is small and has no such index type).
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX ix_vsa_agents_date_agent")
    op.execute("CREATE INDEX ix_vsa_agents_date ON vsa_agents USING brin (snapshot_date) WITH (pages_per_range = 16)")
    op.execute("ALTER TABLE service_agents DROP CONSTRAINT service_agents_pkey")
    op.execute("ALTER TABLE service_agents SET UNLOGGED")
    op.execute(
        "CREATE INDEX ix_service_agents_date ON service_agents USING brin (snapshot_date) WITH (pages_per_range = 16)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX ix_service_agents_date")
    op.execute("ALTER TABLE service_agents SET LOGGED")
    op.execute("ALTER TABLE service_agents ADD CONSTRAINT service_agents_pkey PRIMARY KEY (snapshot_date, service_id, agent_id)")
    op.execute("DROP INDEX ix_vsa_agents_date")
    op.execute("CREATE INDEX ix_vsa_agents_date_agent ON vsa_agents (snapshot_date, agent_id)")
