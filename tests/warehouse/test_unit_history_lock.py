"""Every writer of ``unit_changes`` takes the lock the pipeline's writers take (migration 0019):
the key the upgrade wrote into the trigger's function is the code's. If the code's key ever
changed, existing warehouses would keep the old one and writers would silently stop being
serialised with the pipeline. PostgreSQL only (SQLite has one writer at a time)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from agent_billing.sync.changes import UNIT_HISTORY_LOCK


@pytest.mark.parametrize("warehouse_url", ["postgresql"], indirect=True)
def test_the_trigger_takes_the_pipeline_s_unit_history_lock(warehouse):
    with warehouse.connect() as conn:
        definition = conn.execute(text("SELECT pg_get_functiondef('lock_unit_history()'::regprocedure)")).scalar_one()
        trigger = conn.execute(text(
            "SELECT tgtype FROM pg_trigger WHERE tgname = 'lock_unit_history' "
            "AND tgrelid = 'unit_changes'::regclass")).scalar_one()
    assert f"pg_advisory_xact_lock({UNIT_HISTORY_LOCK})" in definition
    # before (2), per statement (no 1 bit), on INSERT (4), DELETE (8) and UPDATE (16)
    assert trigger & 1 == 0 and trigger & 2 and trigger & 4 and trigger & 8 and trigger & 16
