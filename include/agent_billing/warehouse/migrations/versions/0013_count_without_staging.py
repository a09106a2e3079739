"""The count writes its service agents straight into ``service_agent_history``: ``service_agents`` goes.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03

Issue 10. The night's count wrote every (service, agent) it counted into ``service_agents``
(about 2.1M rows a night at 1M agents, kept for the retention period), counted them per
service, then merged them into ``service_agent_history``. The merge now reads the count's own
query, and the units are counted from the history on the date: the same rows, without writing
and reading 2M staging rows a night. Every date counted so far is in the history already (a
count and its merge were one transaction), so nothing is lost. "Which agents did service S
count on date D" is answered by ``service_agent_history`` (data dictionary §5.5) for every
merged date, as before.
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("service_agents")  # on PostgreSQL with its date partitions


def downgrade() -> None:
    """The table as 0012 left it, empty: a count of revision 0012 fills a date's rows again."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE TABLE service_agents (snapshot_date DATE NOT NULL, service_id TEXT NOT NULL, "
            "agent_id TEXT NOT NULL) PARTITION BY LIST (snapshot_date)"
        )
        return
    op.create_table(
        "service_agents",
        sa.Column("snapshot_date", sa.Date, primary_key=True),
        sa.Column("service_id", sa.Text, primary_key=True),
        sa.Column("agent_id", sa.Text, primary_key=True),
    )
