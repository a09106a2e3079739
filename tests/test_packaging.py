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
    """The wheel built from a clean copy of what the Dockerfile copies (a stale build/ folder
    in the checkout could otherwise add files the real build would miss)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("include/agent_billing", "include/sql"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(out), str(source)],
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


def test_import_rules_hold():
    """Contracts in pyproject.toml ([tool.importlinter]): no Airflow in agent_billing, no
    agent_billing in vsa_simulator, and the product never imports its dev tools."""
    run = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "-r ")):
            package, sep, version = line.partition("==")
            assert sep and version, f"{name}: {line!r} is not an exact pin"
            pins[package.lower().replace("_", "-")] = version
    return pins


def test_runtime_pins_hold_no_test_tools_and_the_environment_matches_them():
    """requirements.txt is what the image installs: exact pins, the Celery stack the compose
    file needs (celery 5.7 breaks Airflow 3.3.2's scheduler), no test or lint tools; and the
    installed environment is consistent (`pip check`)."""
    runtime, dev = _pins("requirements.txt"), _pins("requirements-dev.txt")
    assert not {"pytest", "ruff", "hypothesis", "aiosmtpd", "import-linter"} & runtime.keys()
    assert {"pytest", "ruff", "hypothesis", "aiosmtpd", "import-linter"} <= dev.keys()
    assert runtime["celery"].startswith("5.6.")
    for provider in ("celery", "redis", "fab", "postgres", "smtp", "standard"):
        assert f"apache-airflow-providers-{provider}" in runtime
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout


def test_every_library_the_product_imports_is_a_dependency_of_its_wheel():
    """A wheel installed by itself (``pip install agent-billing``) gets what ``agent_billing``
    imports: each third-party module it imports belongs to a distribution pyproject.toml lists."""
    import ast
    import importlib.metadata
    import re
    import tomllib

    declared = {
        re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    modules = set()
    for path in (ROOT / "include" / "agent_billing").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    third_party = modules - set(sys.stdlib_module_names) - {"agent_billing", "__future__"}
    distributions = importlib.metadata.packages_distributions()
    missing = {
        module: distributions.get(module) for module in sorted(third_party)
        if not {d.lower().replace("_", "-") for d in distributions.get(module, [module])} & declared
    }
    assert "msgspec" in third_party and "isal" in third_party
    assert not missing, f"imported by agent_billing but not in pyproject.toml's dependencies: {missing}"
