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
