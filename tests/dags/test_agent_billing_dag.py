"""agent_billing: which dates a run bills, and one run end to end through Airflow (dag.test)."""

from __future__ import annotations

import inspect
from decimal import Decimal
from types import SimpleNamespace

import pytest
from sqlalchemy import text

from agent_billing.contracts import apply_contracts


@pytest.fixture
def billing_dag(dagbag):
    return dagbag.get_dag("agent_billing")


def resolve(billing_dag, monkeypatch, *, as_of=None, events=()):
    """Run the resolve_dates task function with a fake context."""
    from agent_billing_assets import SNAPSHOT_ASSET

    function = billing_dag.get_task("resolve_dates").python_callable
    context = {"params": {"as_of": as_of}, "dag": billing_dag,
               "triggering_asset_events": {SNAPSHOT_ASSET: list(events)}}
    monkeypatch.setitem(inspect.unwrap(function).__globals__, "get_current_context", lambda: context)
    return function()


def event(snapshot_date: str) -> SimpleNamespace:
    return SimpleNamespace(extra={"snapshot_date": snapshot_date}, source_dag_id="vsa_asset_sync")


def test_dag_shape(billing_dag):
    from agent_billing_assets import SNAPSHOT_ASSET

    assert billing_dag.max_active_runs == 1
    assert list(billing_dag.timetable.asset_condition.objects) == [SNAPSHOT_ASSET]
    assert billing_dag.default_args["retry_exponential_backoff"] is True
    assert [t.task_id for t in billing_dag.topological_sort()] == [
        "resolve_dates", "bill", "notify", "fail_if_work_failed"]
    assert billing_dag.get_task("notify").trigger_rule == "all_done"  # mail goes out after a failure


def test_coalesced_asset_events_are_billed_once_each_in_order(billing_dag, monkeypatch):
    events = [event("2024-03-03"), event("2024-03-01"), event("2024-03-03"), event("2024-02-28")]
    assert resolve(billing_dag, monkeypatch, events=events) == ["2024-02-28", "2024-03-01", "2024-03-03"]


def test_the_as_of_param_wins_over_events(billing_dag, monkeypatch):
    assert resolve(billing_dag, monkeypatch, as_of="2024-04-01", events=[event("2024-03-03")]) == [
        "2024-04-01"]


def test_a_run_without_any_date_fails_without_retrying(billing_dag, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="no as_of param and no triggering asset event"):
        resolve(billing_dag, monkeypatch)


@pytest.fixture
def counted_contract(warehouse):
    """Contract C with one service counted (10 agents) on a complete 2024-03-01."""
    apply_contracts(warehouse, {"accounts": [{
        "account_id": "A", "name": "A", "vsa_org_id": "1",
        "contracts": [{"contract_id": "C", "currency": "USD", "start_date": "2024-03-01", "services": [
            {"service_id": "S", "name": "Agents", "unit_price": "12.00",
             "units_source": "rmm_agent_count", "start_date": "2024-03-01"}]}],
    }]})
    with warehouse.begin() as conn:
        conn.execute(text("INSERT INTO sync_runs (snapshot_date, status) VALUES ('2024-03-01', 'complete')"))
        conn.execute(text("INSERT INTO service_unit_counts VALUES ('S', '2024-03-01', 10)"))
    return warehouse


@pytest.mark.slow
@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_manual_run_bills_as_of_the_param(billing_dag, counted_contract):
    warehouse = counted_contract

    run = billing_dag.test(run_conf={"as_of": "2024-03-01"})

    assert run.state == "success"
    with warehouse.connect() as conn:
        invoice = conn.execute(text("SELECT invoice_id, total FROM invoices")).one()
    assert (invoice[0], Decimal(str(invoice[1]))) == ("INV-C-2024-03", Decimal("120"))
    [bill] = [ti for ti in run.get_task_instances() if ti.task_id == "bill"]
    assert bill.state == "success"


@pytest.mark.slow
@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_date_beyond_the_billing_horizon_fails_at_once_and_posts_nothing(billing_dag, counted_contract):
    warehouse = counted_contract

    run = billing_dag.test(run_conf={"as_of": "2099-12-01"})

    assert run.state == "failed"
    [bill] = [ti for ti in run.get_task_instances() if ti.task_id == "bill"]
    assert (bill.state, bill.try_number) == ("failed", 1)  # no retry
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM invoices")).scalar() == 0


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_contract_failing_on_one_date_does_not_stop_the_later_dates(billing_dag, warehouse, monkeypatch):
    """Coalesced events of two nights: a contract failing on the first leaves every other
    contract billed on both; the task fails once at the end, naming each failed date."""
    from airflow.sdk.exceptions import AirflowFailException
    from tests.billing.test_isolation import make_contract_fail

    apply_contracts(warehouse, {"accounts": [{
        "account_id": "A", "name": "A", "vsa_org_id": "1",
        "contracts": [{"contract_id": cid, "currency": "USD", "start_date": "2024-03-01", "services": [
            {"service_id": f"S-{cid}", "name": "Agents", "unit_price": "12.00",
             "units_source": "rmm_agent_count", "start_date": "2024-03-01"}]} for cid in ("C", "C-BAD")],
    }]})
    with warehouse.begin() as conn:
        for day in ("2024-03-01", "2024-03-02"):
            conn.execute(text("INSERT INTO sync_runs (snapshot_date, status) VALUES (:d, 'complete')"), {"d": day})
            for sid in ("S-C", "S-C-BAD"):
                conn.execute(text("INSERT INTO service_unit_counts VALUES (:s, :d, 10)"), {"s": sid, "d": day})
    make_contract_fail(warehouse, "C-BAD")
    pushed = {}
    ti = SimpleNamespace(xcom_push=lambda key, value: pushed.update({key: value}))
    function = billing_dag.get_task("bill").python_callable
    monkeypatch.setitem(inspect.unwrap(function).__globals__, "get_current_context", lambda: {"ti": ti})

    with pytest.raises(AirflowFailException, match=r"on 2 date\(s\).*2024-03-01: C-BAD .*2024-03-02: C-BAD"):
        function(["2024-03-01", "2024-03-02"])
    assert [r["as_of"] for r in pushed["return_value"]] == ["2024-03-01", "2024-03-02"]
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT contract_id, as_of FROM billing_settled")).all() == [("C", "2024-03-02")]
        assert conn.execute(text("SELECT invoice_id FROM invoices")).scalars().all() == ["INV-C-2024-03"]

    # A later date beyond the horizon stops the run; the earlier date's failure is still named.
    with pytest.raises(AirflowFailException, match=r"2024-03-02 failed .*C-BAD .*; then cannot bill as of 2024-03-05"):
        function(["2024-03-02", "2024-03-05"])
