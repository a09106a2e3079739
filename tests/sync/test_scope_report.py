"""Scopes that point at nothing, reported by every nightly sync (SPEC 4.1): in the step's
result and sync_runs, with no count for the service (a mistake, not zero units), and one
data-team alert per problem, not one every night."""

from __future__ import annotations

import json

from sqlalchemy import text

from agent_billing.contracts import apply_contracts
from agent_billing.sync.pipeline import count_step, diff_step, load_step

from .conftest import CONTRACT, DAYS, ORG, write_landing

GHOST_GROUP = "73511820644390182275509999"


def _with_services(*services: dict) -> dict:
    doc = json.loads(json.dumps(CONTRACT))
    doc["accounts"][0]["contracts"][0]["services"] += list(services)
    return doc


def test_a_scope_that_points_at_nothing_is_reported_not_counted_and_alerted_once(warehouse, settings):
    apply_contracts(warehouse, _with_services(
        {"service_id": "S-GHOST", "name": "Ghost group", "unit_price": "5.00",
         "units_source": "rmm_agent_count", "vsa_machine_group_id": GHOST_GROUP, "start_date": "2024-01-01"},
    ))
    d1, d2, _ = sorted(DAYS)
    results = []
    for day in (d1, d2):
        write_landing(settings.raw_path, day, *DAYS[day])
        load_step(warehouse, settings, day)
        count_step(warehouse, settings, day)
        results.append(diff_step(warehouse, settings, day))
    expected = (f"service S-GHOST: machine group {GHOST_GROUP} does not exist in org {ORG} "
                f"(Contoso Ltd) in the VSA snapshot of {d2}")
    assert results[-1].status == "complete"
    assert results[-1].detail["scope_problems"] == [expected]
    with warehouse.connect() as conn:
        stored = conn.execute(text("SELECT scope_problems FROM sync_runs WHERE snapshot_date = :d"), {"d": d2}).scalar()
        counts = conn.execute(text("SELECT COUNT(*) FROM service_unit_counts WHERE service_id = 'S-GHOST'")).scalar()
        changes = conn.execute(text("SELECT COUNT(*) FROM unit_changes WHERE service_id = 'S-GHOST'")).scalar()
        alerts = conn.execute(text(
            "SELECT message_id, recipients FROM notification_outbox WHERE kind = 'scope'")).all()
    assert json.loads(stored) == [expected]
    assert counts == 0 and changes == 0  # no false zero, so no false credit
    assert alerts == [(f"scope:S-GHOST:machine_group:{GHOST_GROUP}", "data@msp.example")]
