"""Every DAG imports cleanly, parses fast, and carries the project's policies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((ROOT / "dags").glob("*.py"))
EXPECTED = {"vsa_asset_sync", "agent_billing", "get_units_now"}


def test_no_import_errors_and_every_dag_present(dagbag):
    assert dagbag.import_errors == {}
    assert EXPECTED <= set(dagbag.dag_ids)


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_policies(dagbag, dag_id):
    dag = dagbag.get_dag(dag_id)
    assert dag.tags and "agent-billing" in dag.tags
    assert dag.default_args.get("retries", 0) >= 2
    assert dag.catchup is False
    assert dag.doc_md
    for task in dag.tasks:
        assert task.execution_timeout is not None, f"{dag_id}.{task.task_id} has no timeout"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_parses_without_heavy_imports(path):
    """Parse each file in a fresh interpreter (after Airflow itself is imported): neither pandas,
    great_expectations, requests nor the package is imported by it, but for the package's one
    module of rules the DAG checks its settings with (``agent_billing.zones``: zoneinfo only)."""
    code = (
        "import json, sys, time, runpy\n"
        f"sys.path[:0] = [{str(ROOT / 'plugins')!r}, {str(ROOT / 'dags')!r}]\n"
        "import airflow.sdk, pendulum\n"
        "before = set(sys.modules)\n"
        "start = time.perf_counter()\n"
        f"runpy.run_path({str(path)!r})\n"
        "elapsed = time.perf_counter() - start\n"
        "new = set(sys.modules) - before - {'agent_billing', 'agent_billing.zones'}\n"
        "heavy = sorted({m.split('.')[0] for m in new} & {'pandas', 'great_expectations', 'requests', 'agent_billing'})\n"
        "print(json.dumps([elapsed, heavy]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    elapsed, heavy = json.loads(out.stdout.strip().splitlines()[-1])
    # No time limit here (speed lives in benchmarks, not in tests that a busy machine fails):
    # what makes a DAG file slow to parse is a heavy import, and that is what is checked.
    assert heavy == [], f"{path.name} imports {heavy} at parse time ({elapsed:.2f} s)"
