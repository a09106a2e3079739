"""The asset hand-off through Airflow: nights synced out of date order (as a backfill may
deliver them) publish snapshot asset events; Airflow's scheduler turns the queued events
into asset-triggered ``agent_billing`` runs, and a run carrying several events bills every
snapshot date once, in ascending order.

Airflow queues one entry per (asset, DAG): a run consumes the events up to the moment that
entry was created, so events that arrive before the scheduler's next pass ride on the run
the *next* event triggers. The test plays exactly that sequence.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pendulum
import pytest
from sqlalchemy import text

from agent_billing.contracts import apply_contracts
from vsa_simulator.generated import GeneratedScenario
from vsa_simulator.testing import run_simulator

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clean_asset_queue(airflow_db):
    """Forget asset events left by other tests in the session's metadata DB (their runs are
    finished, so they hold no run slot)."""
    from airflow.models.asset import AssetDagRunQueue, AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        session.execute(delete(AssetDagRunQueue))
        session.execute(delete(AssetEvent))


def create_asset_triggered_runs() -> None:
    """One pass of the scheduler's run creation (what `airflow scheduler` does each loop)."""
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.utils.session import create_session
    from airflow.utils.sqlalchemy import prohibit_commit

    runner = SchedulerJobRunner(job=Job())
    with create_session() as session, prohibit_commit(session) as guard:
        runner._create_dagruns_for_dags(guard, session)


def run_tasks(dag, dag_run) -> None:
    """Run an existing DAG run's tasks in process, in dependency order, exactly as
    ``dag.test()`` does (``dag.test()`` itself always creates a fresh manual run)."""
    from airflow.models.dagbag import DBDagBag
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState

    with create_session() as session:
        dag_run = session.get(type(dag_run), dag_run.id)
        dag_run.dag = DBDagBag().get_dag_for_run(dag_run, session=session)  # as the scheduler does
        dag_run.set_state(DagRunState.RUNNING)  # as the scheduler does when it starts a queued run
        session.commit()
        while dag_run.state == DagRunState.RUNNING:
            session.expire_all()
            schedulable, _ = dag_run.update_state(session=session)
            for ti in schedulable:
                ti.try_number += 1
                ti.state = TaskInstanceState.SCHEDULED
            session.commit()
            for ti in [t for t in dag_run.get_task_instances(session=session)
                       if t.state == TaskInstanceState.SCHEDULED]:
                _run_task(ti=ti, task=dag.task_dict[ti.task_id])


@pytest.mark.slow
@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_backfilled_nights_reach_billing_as_asset_events_and_each_date_is_billed_in_order(
        dagbag, sync_dag, warehouse, tmp_path, monkeypatch, clean_asset_queue):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunType

    world = GeneratedScenario(seed=5, orgs=2, agents=200, start=date(2024, 2, 1))
    first = world.state(date(2024, 2, 28))
    org = first.orgs.record(first.orgs.handles[0])["OrgId"]
    apply_contracts(warehouse, {"accounts": [{
        "account_id": "A", "name": "A", "vsa_org_id": org,
        "contracts": [{"contract_id": "C", "currency": "USD", "start_date": "2024-02-29",
                       "billing_day": 1, "services": [
            {"service_id": "S", "name": "All", "unit_price": "9.50", "units_source": "rmm_agent_count",
             "start_date": "2024-02-29"}]}],
    }]})
    monkeypatch.setenv("AGENT_BILLING_RAW_PATH", str(tmp_path / "raw"))
    monkeypatch.setenv("AGENT_BILLING_LATE_OBSERVATION", "allow")  # the dates are in the past

    sync = sync_dag

    def sync_night(night: date) -> None:
        with run_simulator(world, date=night) as vsa:
            monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", vsa.connection_json())
            logical = pendulum.datetime(night.year, night.month, night.day, 2, tz="UTC")
            assert sync.test(logical_date=logical).state == "success"

    # A fresh parse, as a worker would do: dag.test() in another test leaves its run_conf in the
    # session DagBag's task params (an in-process artefact; real workers parse per task).
    billing = DagBag(dag_folder=str(ROOT / "dags" / "agent_billing_dag.py")).get_dag("agent_billing")
    runs, results = [], []

    def schedule_and_run_billing() -> None:
        """One scheduler pass, then the new billing run executed to the end (max_active_runs=1
        holds the next run back until this one finishes)."""
        create_asset_triggered_runs()
        with create_session() as session:
            [run] = session.query(DagRun).filter(DagRun.dag_id == "agent_billing",
                                                 DagRun.state == "queued").all()
            session.expunge_all()
        run_tasks(billing, run)
        with create_session() as session:
            run = session.get(DagRun, run.id)
            assert run.run_type == DagRunType.ASSET_TRIGGERED
            assert {ti.task_id: ti.state for ti in run.get_task_instances(session=session)} == {
                "resolve_dates": "success", "bill": "success", "notify": "success",
                "fail_if_work_failed": "skipped"}
            runs.append(sorted(e.extra["snapshot_date"] for e in run.consumed_asset_events))
            xcom = session.scalars(XComModel.get_many(run_id=run.run_id, dag_ids="agent_billing",
                                                      task_ids="bill", key="return_value")).one()
            results.append(XComModel.deserialize_value(xcom))

    for night in (date(2024, 2, 28), date(2024, 3, 2), date(2024, 2, 29)):  # no scheduler pass between
        sync_night(night)
    schedule_and_run_billing()  # run A: the event that created the queue entry
    sync_night(date(2024, 3, 1))
    schedule_and_run_billing()  # run B: the events that waited, and the new one

    assert runs == [["2024-02-28"], ["2024-02-29", "2024-03-01", "2024-03-02"]]
    # Each date billed once, ascending: February's invoice on its start date, March's on the 1st.
    assert [[(r["as_of"], r["invoices_posted"]) for r in result] for result in results] == [
        [("2024-02-28", 0)],
        [("2024-02-29", 1), ("2024-03-01", 1), ("2024-03-02", 0)],
    ]

    with warehouse.connect() as conn:
        invoices = conn.execute(text(
            "SELECT invoice_id, invoice_date FROM invoices ORDER BY invoice_date")).all()
        march_units = conn.execute(text(
            "SELECT units FROM invoice_lines WHERE invoice_id = 'INV-C-2024-03' AND kind = 'normal'")).scalar()
        units_on_first = conn.execute(text(
            "SELECT units FROM service_unit_counts WHERE service_id = 'S' AND snapshot_date = '2024-03-01'"
        )).scalar()
    assert [(i, str(d)) for i, d in invoices] == [
        ("INV-C-2024-02", "2024-02-29"), ("INV-C-2024-03", "2024-03-01")]
    assert march_units == units_on_first
