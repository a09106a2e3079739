"""Migration 0016 keeps each counted service's scope per date, so that a night compares only the
pairs whose inputs changed. Dates counted before it have no scopes: the first night after the
upgrade compares every pair, so a service that stopped being counted that night loses its agents
there. A downgrade removes the tables and the index. Both engines."""

from __future__ import annotations

import copy

from alembic import command
from sqlalchemy import inspect, text

from agent_billing.contracts import apply_contracts
from agent_billing.settings import Settings
from agent_billing.sync.changes import counting
from agent_billing.sync.pipeline import count_step, load_step
from agent_billing.warehouse import upgrade
from agent_billing.warehouse.migrate import alembic_config

from ..sync.conftest import CONTRACT, DAYS, write_landing

D1, D2, D3 = sorted(DAYS)
COUNTED = """
SELECT service_id, COUNT(*) FROM service_agent_history
WHERE valid_from <= :d AND (valid_to IS NULL OR valid_to > :d) GROUP BY service_id ORDER BY service_id
"""


def test_a_service_ended_before_the_first_night_after_the_upgrade_counts_nothing_that_night(
    warehouse, tmp_path, monkeypatch
):
    # Here every scope is new after the upgrade, so the size rule alone would compare every
    # pair; the test holds the rule that does not depend on sizes: no scope known, every pair.
    monkeypatch.setattr(counting, "_many_changed", lambda conn, day: False)
    settings = Settings(raw_path=tmp_path / "raw", snapshot_retention_days=30)
    apply_contracts(warehouse, CONTRACT)
    for day in (D1, D2):
        write_landing(settings.raw_path, day, *DAYS[day])
        load_step(warehouse, settings, day)
        count_step(warehouse, settings, day)
    command.downgrade(alembic_config(warehouse), "0015")  # as if D1 and D2 were counted under 0015
    assert not {"service_scope_history", "service_group_history"} & set(inspect(warehouse).get_table_names())
    assert "ix_service_agent_history_agent" not in {
        i["name"] for i in inspect(warehouse).get_indexes("service_agent_history")}
    upgrade(warehouse)
    assert "ix_service_agent_history_agent" in {
        i["name"] for i in inspect(warehouse).get_indexes("service_agent_history")}

    ended = copy.deepcopy(CONTRACT)
    view = next(s for s in ended["accounts"][0]["contracts"][0]["services"] if s["service_id"] == "S-VIEW")
    view["end_date"] = D2.isoformat()
    apply_contracts(warehouse, ended)
    write_landing(settings.raw_path, D3, *DAYS[D3])
    load_step(warehouse, settings, D3)
    count_step(warehouse, settings, D3)

    with warehouse.connect() as conn:
        before = dict(conn.execute(text(COUNTED), {"d": D2}).all())
        after = dict(conn.execute(text(COUNTED), {"d": D3}).all())
        units = dict(conn.execute(
            text("SELECT service_id, units FROM service_unit_counts WHERE snapshot_date = :d"), {"d": D3}).all())
        scopes = {r[0] for r in conn.execute(text(
            "SELECT service_id FROM service_scope_history WHERE valid_from <= :d AND (valid_to IS NULL OR valid_to > :d)"),
            {"d": D3})}
    assert before["S-VIEW"] == 2  # a1 and a5 were in the view on D2
    assert "S-VIEW" not in after and "S-VIEW" not in units  # ended: no agents, no count on D3
    assert after == units  # every other service's count is its agents in the history
    assert scopes == {"S-WS", "S-SRV", "S-ORG"}  # kept from this night on
