"""Migration 0008 on a warehouse that already holds data: view members doubled by two
concurrent loads (possible before this revision) are made unique, and the revision goes
down and up again; both engines."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import text

from agent_billing.warehouse import upgrade
from agent_billing.warehouse.migrate import alembic_config


def test_doubled_view_members_are_made_unique_and_stay_unique(warehouse):
    command.downgrade(alembic_config(warehouse), "0007")
    with warehouse.begin() as conn:
        for agent in ("2", "2", "3"):
            conn.execute(text("INSERT INTO vsa_view_members (snapshot_date, view_id, agent_id) "
                              "VALUES ('2024-01-01', '1', :a)"), {"a": agent})
    upgrade(warehouse)
    with warehouse.connect() as conn:
        rows = conn.execute(text("SELECT agent_id FROM vsa_view_members ORDER BY agent_id")).scalars().all()
    assert rows == ["2", "3"]
    with pytest.raises(Exception, match="(?i)unique"), warehouse.begin() as conn:
        conn.execute(text("INSERT INTO vsa_view_members (snapshot_date, view_id, agent_id) "
                          "VALUES ('2024-01-01', '1', '2')"))
