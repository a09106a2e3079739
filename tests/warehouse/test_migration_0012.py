"""Migration 0012 on a warehouse with a history: each date that was staged gets its stage (merged
or discarded: settled; else loaded; merged with nothing staged left: dropped), and the retention
then drops only the settled ones. Both engines."""

from __future__ import annotations

from datetime import date

from alembic import command
from sqlalchemy import text

from agent_billing.sync.snapshot_history import prune_staging
from agent_billing.warehouse import upgrade
from agent_billing.warehouse.migrate import alembic_config
from agent_billing.warehouse.staging import empty_date

from ..sync.conftest import staged_dates, stages

MERGED_GONE, MERGED, DISCARDED, FAILED, LATEST = (date(2024, 3, d) for d in (1, 2, 3, 4, 5))


def test_existing_dates_get_their_stage_and_only_settled_ones_are_pruned(warehouse):
    command.downgrade(alembic_config(warehouse), "0011")
    with warehouse.begin() as conn:
        for day in (MERGED, DISCARDED, FAILED, LATEST):
            for table in ("vsa_agents", "service_agents"):
                empty_date(conn, table, day)  # its partition on PostgreSQL
            conn.execute(text("INSERT INTO vsa_agents (snapshot_date, agent_id, agent_name, org_id, online) "
                              "VALUES (:d, 'A1', 'n', 'O1', 1)"), {"d": day})
            conn.execute(text("INSERT INTO service_agents (snapshot_date, service_id, agent_id) "
                              "VALUES (:d, 'S1', 'A1')"), {"d": day})
        for day in (MERGED_GONE, MERGED, LATEST):
            conn.execute(text("INSERT INTO history_dates (snapshot_date) VALUES (:d)"), {"d": day})
        for day, status in ((DISCARDED, "discarded"), (FAILED, "failed")):
            conn.execute(text("INSERT INTO sync_runs (snapshot_date, status) VALUES (:d, :s)"), {"d": day, "s": status})
    upgrade(warehouse)
    assert stages(warehouse) == {
        str(MERGED_GONE): ("dropped", 1), str(MERGED): ("settled", 1), str(DISCARDED): ("settled", 1),
        str(FAILED): ("loaded", 1), str(LATEST): ("settled", 1),
    }
    prune_staging(warehouse, LATEST, 0)
    assert staged_dates(warehouse) == {str(FAILED), str(LATEST)}
    assert stages(warehouse)[str(MERGED)] == ("dropped", 1) == stages(warehouse)[str(DISCARDED)]
    command.downgrade(alembic_config(warehouse), "0011")
    upgrade(warehouse)
    assert stages(warehouse)[str(FAILED)] == ("loaded", 1)
