"""The product as users install it: a built wheel that carries its SQL, and the import rules
that keep Airflow out of the core and the simulator independent of the product."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(out), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    (found,) = out.glob("agent_billing-*.whl")
    return found


def test_wheel_ships_the_sql_and_migrations_but_not_the_dev_tools(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    sql = {n for n in names if n.endswith(".sql")}
    expected = {
        "agent_billing/sql_files/" + p.relative_to(ROOT / "include" / "sql").as_posix()
        for p in (ROOT / "include" / "sql").rglob("*.sql")
    }
    assert sql == expected
    assert any(n.startswith("agent_billing/warehouse/migrations/versions/0001") for n in names)
    assert not [n for n in names if n.startswith(("vsa_simulator/", "agent_billing_demo/"))]


def test_agent_billing_runs_from_the_wheel(wheel, tmp_path):
    """Installed from the wheel alone (not the source tree), the command line migrates a
    warehouse and runs a billing run, which reads its SQL from inside the wheel."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True, capture_output=True, text=True,
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(target),
        "AIRFLOW_CONN_BILLING_WAREHOUSE": f"sqlite:///{tmp_path / 'w.db'}",
    }
    workdir = tmp_path / "elsewhere"  # not the repository: nothing may come from the checkout
    workdir.mkdir()
    where = subprocess.run(
        [sys.executable, "-c", "import agent_billing.sql as s; print(s.__file__); print(s.SQL_DIR)"],
        env=env, cwd=workdir, check=True, capture_output=True, text=True,
    ).stdout.split()
    assert all(Path(p).is_relative_to(target) for p in where), where
    for argv in (["db", "upgrade"], ["bill", "--as-of", "2000-01-01"]):
        if argv[0] == "bill":  # the nightly sync of the date concluded (the billing horizon)
            with sqlite3.connect(tmp_path / "w.db") as db:
                db.execute("INSERT INTO sync_runs (snapshot_date, status) VALUES ('2000-01-01', 'gap')")
        run = subprocess.run(
            [sys.executable, "-m", "agent_billing.cli", *argv], env=env, cwd=workdir,
            capture_output=True, text=True,
        )
        assert run.returncode == 0, run.stderr


@pytest.mark.skipif(shutil.which("lint-imports", path=str(Path(sys.executable).parent)) is None,
                    reason="import-linter is installed by requirements-dev.txt")
def test_import_rules_hold():
    """Contracts in pyproject.toml ([tool.importlinter]): no Airflow in agent_billing, no
    agent_billing in vsa_simulator, and the product never imports its dev tools."""
    run = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
