"""The count's inputs per service as validity intervals; ``service_agent_history`` indexed by agent.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05

Issue 10. Every night the count compared all of its service agents (2.1M pairs at 1M agents)
with the runs covering the date, though a quiet night changes a few thousand. What a service
counts on a date follows from its scope, the machine groups its scope covers there, and its
agents' org, machine group, check-in state and view membership. The last four are already kept
(``vsa_agent_history``, ``vsa_view_member_history``); the first two now are too:

- ``service_scope_history``: each counted service's org, machine group, view and exclusions;
- ``service_group_history``: the machine groups a service's scope covers (its group and, with
  ``include_subgroups``, the group's subgroups on the date).

The count then compares only the pairs of agents or services whose inputs changed
(``sync.changes.counting``); ``ix_service_agent_history_agent`` finds an agent's runs. Both
tables start empty: on the first date counted after this migration every service's scope
arrives, so that count compares every pair, as before.
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def _interval_columns(table: str) -> list:
    return [
        sa.Column("valid_from", sa.Date, primary_key=True),
        sa.Column("valid_to", sa.Date),
        sa.CheckConstraint("valid_to IS NULL OR valid_to > valid_from", name=f"ck_{table}_interval"),
    ]


def upgrade() -> None:
    op.create_table(
        "service_scope_history",
        sa.Column("service_id", sa.Text, primary_key=True),
        sa.Column("vsa_org_id", sa.Text),
        sa.Column("vsa_machine_group_id", sa.Text),
        sa.Column("vsa_view_id", sa.Text),
        sa.Column("exclude_never_checked_in", sa.Boolean),
        sa.Column("exclude_offline_days", sa.Integer),
        *_interval_columns("service_scope_history"),
    )
    op.create_table(
        "service_group_history",
        sa.Column("service_id", sa.Text, primary_key=True),
        sa.Column("machine_group_id", sa.Text, primary_key=True),
        *_interval_columns("service_group_history"),
    )
    for table in ("service_scope_history", "service_group_history"):
        op.create_index(f"ix_{table}_valid_from", table, ["valid_from"])
        op.create_index(f"ix_{table}_valid_to", table, ["valid_to"])
    op.create_index("ix_service_agent_history_agent", "service_agent_history", ["agent_id"])


def downgrade() -> None:
    op.drop_index("ix_service_agent_history_agent", table_name="service_agent_history")
    op.drop_table("service_group_history")
    op.drop_table("service_scope_history")
