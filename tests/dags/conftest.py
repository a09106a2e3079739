"""Airflow fixtures: a migrated metadata database (SQLite, in the session's AIRFLOW_HOME) and
the project's DagBag. tests/conftest.py points AIRFLOW_HOME and the dags folder at
throwaway/project paths before Airflow is imported."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def airflow_db():
    from airflow.utils import db

    db.initdb()


@pytest.fixture(scope="session")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))  # no include_examples: removed in 3.3


@pytest.fixture
def smtp_inbox(local_smtp, monkeypatch):
    """A local SMTP server, exported as Airflow's ``smtp_default`` connection."""
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", local_smtp.connection_json)
    return local_smtp


def task_states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def task_tries(run) -> dict[str, int]:
    return {ti.task_id: ti.try_number for ti in run.get_task_instances()}


@pytest.fixture
def sync_dag(dagbag, monkeypatch):
    """``vsa_asset_sync`` for ``dag.test()`` of runs that may succeed.

    Airflow 3.3.2's ``dag.test()`` builds its scheduler DAG in memory, where the deadline
    alerts are still definitions instead of the ids the metadata DB gives them; a run that
    succeeds then fails in ``DagRun.update_state`` (``'dict' object has no attribute 'hex'``)
    when it prunes the run's deadlines. The scheduler reads DAGs from the DB and is not
    affected. Tests of the deadline itself use the DAG as parsed (``dagbag``)."""
    dag = dagbag.get_dag("vsa_asset_sync")
    monkeypatch.setattr(dag, "deadline", None)
    return dag


@pytest.fixture
def fresh_dag(airflow_db):
    """A DAG parsed anew from its file, for a ``dag.test(run_conf=...)``: the run_conf stays in
    the parsed DAG's params afterwards (an in-process artefact), which must not leak into the
    session DagBag that other tests use."""
    from airflow.dag_processing.dagbag import DagBag

    files = {"agent_billing": "agent_billing_dag.py", "get_units_now": "get_units_now.py",
             "vsa_asset_sync": "vsa_asset_sync.py"}

    def parse(dag_id: str):
        return DagBag(dag_folder=str(ROOT / "dags" / files[dag_id])).get_dag(dag_id)

    return parse
