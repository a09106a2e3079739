"""Migration 0011 on a warehouse that already holds staging: on PostgreSQL each date's rows move
into their own partition, reads and keys are unchanged, and the revision goes down and up
again with the rows intact; on SQLite it changes nothing. Both engines. (Migration 0013 drops
``service_agents``: this test stops at 0011.)"""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import text

from agent_billing.warehouse.migrate import alembic_config
from agent_billing.warehouse.staging import partition_name, partitions

DAYS = ("2024-03-01", "2024-03-02")
STAGING_TABLES = ("vsa_agents", "vsa_view_members", "service_agents")  # at revision 0011
ROWS = {
    "vsa_agents": "INSERT INTO vsa_agents (snapshot_date, agent_id, agent_name, org_id, online) VALUES (:d, :a, 'n', 'o', 1)",
    "vsa_view_members": "INSERT INTO vsa_view_members (snapshot_date, view_id, agent_id) VALUES (:d, 'v', :a)",
    "service_agents": "INSERT INTO service_agents (snapshot_date, service_id, agent_id) VALUES (:d, 's', :a)",
}


def staged(engine) -> dict[str, list[tuple]]:
    with engine.connect() as conn:
        return {
            table: [(str(d)[:10], a) for d, a in conn.execute(
                text(f"SELECT snapshot_date, agent_id FROM {table} ORDER BY 1, 2"))]
            for table in STAGING_TABLES
        }


def test_staging_moves_into_date_partitions_and_back(warehouse):
    from datetime import date

    command.downgrade(alembic_config(warehouse), "0010")  # from the head, through 0013's re-creation
    with warehouse.begin() as conn:
        for sql in ROWS.values():
            for day in DAYS:
                for agent in ("1", "2"):
                    conn.execute(text(sql), {"d": day, "a": agent})
    before = staged(warehouse)
    command.upgrade(alembic_config(warehouse), "0011")
    assert staged(warehouse) == before
    if warehouse.dialect.name == "postgresql":
        with warehouse.connect() as conn:
            assert {t: partitions(conn, t) for t in STAGING_TABLES} == {
                t: [partition_name(t, date.fromisoformat(d)) for d in DAYS] for t in STAGING_TABLES
            }
            logged = dict(conn.execute(text(
                "SELECT relname, relpersistence FROM pg_class WHERE relname LIKE '%\\_2024030%'")).all())
        assert logged["service_agents_20240301"] == "u" and logged["vsa_agents_20240301"] == "p"
    with pytest.raises(Exception, match="(?i)unique"), warehouse.begin() as conn:
        conn.execute(text(ROWS["vsa_view_members"]), {"d": DAYS[0], "a": "1"})
    command.downgrade(alembic_config(warehouse), "0010")
    assert staged(warehouse) == before
    command.upgrade(alembic_config(warehouse), "0011")
    assert staged(warehouse) == before
