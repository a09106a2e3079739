"""The fault suite's harness: nights synced and billed through the real command line (one
subprocess per command, as an operator runs them) against the simulator over HTTP, and a
comparison of whole warehouses, so that a disturbed run can be checked against an undisturbed
one table by table, row by row.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url

from agent_billing.contracts import apply_contracts
from agent_billing.warehouse import connect_warehouse, upgrade
from vsa_simulator import FaultConfig
from vsa_simulator.generated import GeneratedScenario
from vsa_simulator.server import SimulatorServer

START = date(2024, 2, 1)
NIGHTS = [START + timedelta(days=n) for n in range(3)]
PG_URL = os.environ.get(
    "AGENT_BILLING_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/agent_billing_test"
)
# Values a secret scan must never find in any output (the simulator accepts any password in
# the warehouse URL: PostgreSQL here trusts local connections).
VSA_TOKEN = "fault-suite-pat-7c1e9a0b3d"
PG_PASSWORD = "fault-suite-pg-pw-52f1"
# Columns that say when something happened (wall-clock), not what: left out of comparisons.
WHEN_COLUMNS = {
    "updated_at", "created_at", "sent_at", "claimed_at", "checked_at", "computed_at", "posted_at",
    "closed_at", "observed_at", "detected_at", "released_at", "ran_at", "attempts", "last_error",
    "message",  # sync_runs.message: the latest attempt's words (a failed re-run leaves its error)
    "landing_sha256",  # the digest of a manifest, which records when the night was observed
    "loads",  # staged_dates.loads: how many times a night was loaded (a recovery re-runs the load)
}


def world() -> GeneratedScenario:
    return GeneratedScenario(seed=23, orgs=3, agents=240, start=START - timedelta(days=30), daily_churn=0.05)


def contracts(state) -> dict:
    accounts = []
    for n, h in enumerate(state.orgs.handles):
        org = state.orgs.record(h)
        accounts.append({
            "account_id": f"A{n}", "name": org["OrgName"], "vsa_org_id": org["OrgId"],
            "contracts": [{
                "contract_id": f"C{n}", "currency": "USD", "start_date": "2024-01-01",
                "notify_emails": [f"billing@customer{n}.example"],
                "services": [{
                    "service_id": f"S{n}", "name": "Managed endpoint", "unit_price": "12.00",
                    "units_source": "rmm_agent_count", "start_date": "2024-01-01",
                }],
            }],
        })
    return {"accounts": accounts}


@dataclass
class Run:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class Operator:
    """One warehouse, one raw landing folder and the simulator: runs commands like a person
    at a terminal and keeps everything they printed for the secrets scan."""

    url: str
    raw: Path
    sim: SimulatorServer
    engine: Engine
    outputs: list[str] = field(default_factory=list)

    def env(self, **more: str) -> dict[str, str]:
        conn = json.loads(self.sim.connection_json())
        # Fast retries: the suite injects storms of errors.
        conn["extra"] = {**conn.get("extra", {}), "backoff_base": 0.01, "backoff_max": 0.05, "max_retries": 8}
        return {
            **os.environ,
            "AIRFLOW_CONN_BILLING_WAREHOUSE": self.url,
            "AIRFLOW_CONN_VSA_DEFAULT": json.dumps(conn),
            "AGENT_BILLING_RAW_PATH": str(self.raw),
            # The nights are replayed after the fact: the simulator serves each night's state.
            "AGENT_BILLING_LATE_OBSERVATION": "allow",
            "AGENT_BILLING_DATA_TEAM_EMAILS": "data-team@msp.example",
            **more,
        }

    def start(self, *argv: str, **env: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "agent_billing.cli", *argv], env=self.env(**env),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )

    def finish(self, process: subprocess.Popen, timeout: float = 300) -> Run:
        stdout, stderr = process.communicate(timeout=timeout)
        self.outputs += [stdout, stderr]
        return Run(list(process.args), process.returncode, stdout, stderr)

    def run(self, *argv: str, **env: str) -> Run:
        return self.finish(self.start(*argv, **env))

    def sync(self, day: date, **env: str) -> Run:
        self.sim.set_date(day)
        return self.run("sync", "--date", day.isoformat(), **env)

    def bill(self, day: date) -> Run:
        return self.run("bill", "--as-of", day.isoformat())


def kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def wait_until(what: str, probe: Callable[[], object], timeout: float = 60) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def warehouse_contents(engine: Engine) -> dict[str, list[tuple]]:
    """Every table's rows (sorted), without the columns that say when something happened."""
    out = {}
    with engine.connect() as conn:
        for table in sorted(inspect(conn).get_table_names()):
            if table == "alembic_version":
                continue
            columns = [c["name"] for c in inspect(conn).get_columns(table) if c["name"] not in WHEN_COLUMNS]
            rows = conn.execute(text(f"SELECT {', '.join(columns)} FROM {table}")).all()
            out[table] = sorted(tuple(str(v) for v in row) for row in rows)
    return out


@pytest.fixture(scope="session")
def simulator():
    sim = SimulatorServer(world(), date=START, token=VSA_TOKEN).start()
    yield sim
    sim.stop()


@pytest.fixture(autouse=True)
def _no_faults_left(simulator):
    simulator.set_faults(FaultConfig())
    yield
    simulator.set_faults(FaultConfig())


class Warehouses:
    """Fresh warehouses of one engine: migrated, or copies of another (PostgreSQL databases
    cloned as templates, SQLite files copied)."""

    def __init__(self, kind: str, folder: Path, pg_template: str | None) -> None:
        self.kind, self.folder, self.pg_template = kind, folder, pg_template
        self.databases: list[str] = []

    def url(self, name: str) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{self.folder / name}.db"
        base = make_url(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
        return base.set(database=name, password=PG_PASSWORD).render_as_string(hide_password=False)

    def create(self, name: str, copy_of: str | None = None) -> str:
        if self.kind == "sqlite":
            if copy_of:
                shutil.copy(self.folder / f"{copy_of}.db", self.folder / f"{name}.db")
            else:
                engine = connect_warehouse(self.url(name))
                upgrade(engine)
                engine.dispose()
        else:
            with self._admin() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{copy_of or self.pg_template}"'))
            self.databases.append(name)
        return self.url(name)

    def restore(self, name: str, backup_of: str, folder: Path) -> str:
        """The documented backup and restore (docs/deployment.md, "Backups" and "Restore"): on
        PostgreSQL ``pg_dump -Fc`` of ``backup_of``, then ``pg_restore --no-owner --exit-on-error``
        into a new empty database ``name``; on SQLite a copy of the file."""
        if self.kind == "sqlite":
            return self.create(name, copy_of=backup_of)
        libpq = lambda db: self.url(db).replace("postgresql+psycopg://", "postgresql://", 1)  # noqa: E731
        dump = folder / f"{backup_of}.dump"
        subprocess.run(["pg_dump", "-Fc", "-f", str(dump), "-d", libpq(backup_of)], check=True, capture_output=True)
        with self._admin() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE template0'))
        self.databases.append(name)
        subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", "-d", libpq(name), str(dump)],
                       check=True, capture_output=True)
        return self.url(name)

    def drop_all(self) -> None:
        if self.databases:
            with self._admin() as conn:
                for name in self.databases:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    @contextlib.contextmanager
    def _admin(self):
        admin = create_engine(
            make_url(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1)).set(database="postgres"),
            isolation_level="AUTOCOMMIT",
        )
        try:
            with admin.connect() as conn:
                yield conn
        finally:
            admin.dispose()


@dataclass
class Reference:
    """The undisturbed run: the first nights synced and billed (``base``, copied by each test
    as its starting point) and the warehouse after the last night (``expected``)."""

    warehouses: Warehouses
    base: str
    base_raw: Path
    expected: dict[str, list[tuple]]
    night: date
    before_nights: str  # the warehouse with the contracts applied, before the first night
    all_raw: Path  # the landings of every night, the last one included


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def reference(request, tmp_path_factory, simulator) -> Reference:
    kind = request.param
    pg = request.getfixturevalue("pg_template") if kind == "postgresql" else None
    folder = tmp_path_factory.mktemp(f"faults-{kind}")
    suffix = uuid.uuid4().hex[:8]
    warehouses = Warehouses(kind, folder, pg)
    base = f"ab_fault_base_{suffix}"
    url = warehouses.create(base)
    raw = folder / "raw-base"
    op = Operator(url, raw, simulator, connect_warehouse(url))
    apply_contracts(op.engine, contracts(simulator.state()))
    op.engine.dispose()  # a PostgreSQL template is copied only while nobody is connected to it
    before_nights = f"ab_fault_before_{suffix}"
    warehouses.create(before_nights, copy_of=base)
    for day in NIGHTS[:-1]:
        assert op.sync(day).returncode == 0, op.outputs[-1]
        assert op.bill(day).returncode == 0, op.outputs[-1]
    op.engine.dispose()
    ref = warehouses.create(f"ab_fault_ref_{suffix}", copy_of=base)
    ref_raw = folder / "raw-ref"
    shutil.copytree(raw, ref_raw)
    op = Operator(ref, ref_raw, simulator, connect_warehouse(ref))
    assert op.sync(NIGHTS[-1]).returncode == 0, op.outputs[-1]
    assert op.bill(NIGHTS[-1]).returncode == 0, op.outputs[-1]
    expected = warehouse_contents(op.engine)
    op.engine.dispose()
    yield Reference(warehouses, base, raw, expected, NIGHTS[-1], before_nights, ref_raw)
    warehouses.drop_all()


@pytest.fixture
def operator(reference, simulator, tmp_path) -> Operator:
    """A warehouse where the first nights went well (a copy of the reference's), about to run
    the last night: each test disturbs that night and recovers."""
    name = f"ab_fault_{uuid.uuid4().hex[:10]}"
    url = reference.warehouses.create(name, copy_of=reference.base)
    raw = tmp_path / "raw"
    shutil.copytree(reference.base_raw, raw)
    op = Operator(url, raw, simulator, connect_warehouse(url))
    yield op
    op.engine.dispose()


DATA_TEAM = "data-team@msp.example"


def _without_alerts(contents: dict[str, list[tuple]]) -> tuple[dict[str, list[tuple]], list[str]]:
    """The contents without the data team's alerts, and the alerts' message ids."""
    rows = contents.get("notification_outbox", [])
    alerts = [r for r in rows if DATA_TEAM in r]
    return {**contents, "notification_outbox": [r for r in rows if r not in alerts]}, sorted(r[0] for r in alerts)


def assert_recovered(op: Operator, reference: Reference, alerts: tuple[str, ...] = ()) -> None:
    """The warehouse equals the undisturbed run's, table by table; the data team was alerted
    exactly by messages whose ids start with ``alerts``; no output, landed file or table
    holds a secret."""
    got, raised = _without_alerts(warehouse_contents(op.engine))
    want, _ = _without_alerts(reference.expected)
    assert got.keys() == want.keys()
    for table, rows in want.items():
        assert got[table] == rows, f"table {table} differs from the undisturbed run"
    assert len(raised) == len(alerts) and all(
        any(message.startswith(prefix) for message in raised) for prefix in alerts
    ), f"alerts {raised}, expected {alerts}"
    assert_no_secrets(op)


def assert_no_secrets(op: Operator) -> None:
    texts = list(op.outputs)
    texts += [repr(warehouse_contents(op.engine))]
    for path in op.raw.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            texts.append(gzip.decompress(data).decode("utf-8", "replace") if path.suffix == ".gz" else data.decode("utf-8", "replace"))
    for secret in (VSA_TOKEN, PG_PASSWORD):
        leaks = [t[max(0, t.find(secret) - 80):t.find(secret) + 40] for t in texts if secret in t]
        assert not leaks, f"secret found in outputs: {leaks}"
