"""vsa_asset_sync end to end through Airflow (dag.test) against the simulator over HTTP."""

from __future__ import annotations

from datetime import date

import pendulum
import pytest
from sqlalchemy import text

from agent_billing.contracts import apply_contracts
from vsa_simulator.generated import GeneratedScenario
from vsa_simulator.testing import run_simulator

DAY = date(2024, 2, 5)


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_nightly_run_lands_counts_and_emits_the_snapshot_asset(sync_dag, warehouse, tmp_path, monkeypatch):
    world = GeneratedScenario(seed=3, orgs=3, agents=300, start=date(2024, 1, 1))
    state = world.state(DAY)
    org = state.orgs.record(state.orgs.handles[0])["OrgId"]
    apply_contracts(warehouse, {"accounts": [{
        "account_id": "A", "name": "A", "vsa_org_id": org,
        "contracts": [{"contract_id": "C", "currency": "USD", "start_date": "2024-01-01", "services": [
            {"service_id": "S", "name": "All", "unit_price": "9.50", "units_source": "rmm_agent_count",
             "start_date": "2024-01-01"}]}],
    }]})
    monkeypatch.setenv("AGENT_BILLING_RAW_PATH", str(tmp_path / "raw"))
    monkeypatch.setenv("AGENT_BILLING_LATE_OBSERVATION", "allow")  # the date is in the past
    with run_simulator(world, date=DAY) as vsa:
        monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", vsa.connection_json())
        run = sync_dag.test(logical_date=pendulum.datetime(2024, 2, 5, 2, tz="UTC"))
    assert run.state == "success"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["quarantine_action"] == "skipped"
    assert all(states[t] == "success" for t in ("extract", "load", "validate", "count", "diff", "publish"))

    expected = sum(1 for h in state.agents.handles if state.agents.record(h)["OrgId"] == org)
    with warehouse.connect() as conn:
        units = conn.execute(text("SELECT units FROM service_unit_counts WHERE service_id = 'S'")).scalar()
        status = conn.execute(text("SELECT status FROM sync_runs")).scalar()
    assert (units, status) == (expected, "complete")

    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        events = [e.extra for e in session.query(AssetEvent).filter(AssetEvent.source_run_id == run.run_id)]
    assert events == [{"snapshot_date": "2024-02-05"}]


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_step_that_fails_for_good_marks_the_date_failed_and_alerts_the_data_team(
        dagbag, warehouse, tmp_path, smtp_inbox, monkeypatch):
    import json

    world = GeneratedScenario(seed=3, orgs=1, agents=20, start=date(2024, 1, 1))
    secret = "revoked-token-8f3a"
    monkeypatch.setenv("AGENT_BILLING_RAW_PATH", str(tmp_path / "raw"))
    monkeypatch.setenv("AGENT_BILLING_LATE_OBSERVATION", "allow")
    monkeypatch.setenv("AGENT_BILLING_DATA_TEAM_EMAILS", "data@msp.example")
    dag = dagbag.get_dag("vsa_asset_sync")
    with run_simulator(world, date=DAY) as vsa:
        monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", json.dumps(json.loads(vsa.connection_json()) | {"password": secret}))
        run = dag.test(logical_date=pendulum.datetime(2024, 2, 5, 2, tz="UTC"))

    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "failed"
    assert (states["extract"], states["load"], states["notify"]) == ("failed", "upstream_failed", "success")
    assert states["fail_if_work_failed"] == "failed"
    # A revoked token is not transient: one try, no retry delays (the client retried 5xx itself).
    assert [ti.try_number for ti in run.get_task_instances() if ti.task_id == "extract"] == [1]
    with warehouse.connect() as conn:
        status, message = conn.execute(text("SELECT status, message FROM sync_runs")).one()
        alerts = conn.execute(text("SELECT message_id, recipients, body FROM notification_outbox")).all()
    assert status == "failed"
    assert message.startswith("extract failed: ") and "authentication" in message.lower()
    assert [(a.message_id, a.recipients) for a in alerts] == [(f"failure:2024-02-05:extract:{run.run_id}", "data@msp.example")]
    assert secret not in message and secret not in alerts[0].body


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_failed_quality_gate_keeps_the_record_and_the_alert_of_its_own_step(dagbag, warehouse, monkeypatch):
    """validate_step records a failed gate (status failed, the failed expectations) with its
    own alert; the step's failure callback, which sees the gate through fail_fast's
    AirflowFailException, must not overwrite that record nor alert twice."""
    from types import SimpleNamespace

    from agent_billing.quality.snapshot_gate import QualityGateFailed
    from run_states import fail_fast

    monkeypatch.setenv("AGENT_BILLING_DATA_TEAM_EMAILS", "data@msp.example")
    gate = "quality gate failed for snapshot 2024-02-05: agents.expect_column_values_to_be_unique(agent_id)"
    with warehouse.begin() as conn:
        conn.execute(text("INSERT INTO sync_runs (snapshot_date, status, message) VALUES ('2024-02-05', 'failed', :m)"),
                     {"m": gate})

    def validate():
        raise QualityGateFailed(gate)

    with pytest.raises(Exception) as failed:
        fail_fast(validate)()
    [callback] = dagbag.get_dag("vsa_asset_sync").get_task("validate").on_failure_callback
    ti = SimpleNamespace(task_id="validate", xcom_pull=lambda task_ids: "2024-02-05")
    callback({"ti": ti, "exception": failed.value})

    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT status, message FROM sync_runs")).one() == ("failed", gate)
        assert conn.execute(text("SELECT COUNT(*) FROM notification_outbox")).scalar() == 0
