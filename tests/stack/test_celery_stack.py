"""The production stack for real: api-server, scheduler, dag-processor, triggerer and a Celery
worker on PostgreSQL (metadata and warehouse) and Redis (the broker), with the simulator as VSA
and a local SMTP server. The scheduled night runs on the worker and hands its asset event to
billing; a 3-night backfill with a gap and a Get Units Now follow. Settings are the ones
docs/deployment.md gives for running the CeleryExecutor outside Docker.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from tests.conftest import PG_URL

from agent_billing.connections import parse_connection
from agent_billing.contracts import apply_contracts
from agent_billing.settings import Settings
from agent_billing.sync.pipeline import extract_step
from agent_billing.vsa.client import VsaClient
from agent_billing.warehouse import connect_warehouse
from agent_billing.warehouse.engine import normalise_url
from vsa_simulator.generated import GeneratedScenario
from vsa_simulator.server import SimulatorServer

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REDIS_DB = 11  # a database number of the stack test's own on the machine's Redis
# The server of the other PostgreSQL tests (AGENT_BILLING_TEST_PG_URL), its maintenance database;
# Redis from AGENT_BILLING_TEST_REDIS_URL (default the local server).
PG_ADMIN = make_url(normalise_url(PG_URL)).set(database="postgres").render_as_string(hide_password=False)
REDIS_URL = make_url(os.environ.get("AGENT_BILLING_TEST_REDIS_URL", "redis://127.0.0.1:6379"))
COMPONENTS = {
    "api-server": ["api-server", "--port", "{api_port}"],
    "scheduler": ["scheduler"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer"],
    "worker": ["celery", "worker", "--concurrency", "2"],
}
DAG_IDS = ("vsa_asset_sync", "agent_billing", "get_units_now")
IN_CI = os.environ.get("CI", "").lower() == "true"

pytestmark = [pytest.mark.slow, pytest.mark.stack, pytest.mark.timeout(1200)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_broker():
    """The broker URL and a key prefix of this run's own: two stacks never share a queue."""
    import redis

    host, port = REDIS_URL.host or "127.0.0.1", REDIS_URL.port or 6379
    client = redis.Redis(host=host, port=port, password=REDIS_URL.password, db=REDIS_DB)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        if IN_CI:
            pytest.fail(f"Redis is required under CI=true but unreachable at {host}:{port}: {exc}")
        pytest.skip(f"Redis not reachable at {host}:{port}")
    prefix = f"ab_stack_{uuid.uuid4().hex[:10]}:"
    yield REDIS_URL.set(database=str(REDIS_DB)).render_as_string(hide_password=False), prefix
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()


@pytest.fixture
def metadata_db(pg_template):  # pg_template: PostgreSQL is reachable (or the test fails in CI)
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"ab_stack_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


class Stack:
    """The Airflow processes of one test, their environment and their logs."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home, self.env = home, env
        self.processes: dict[str, subprocess.Popen] = {}
        self.meta = create_engine(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("+psycopg2", "+psycopg"))

    def airflow(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        run = subprocess.run([str(BIN / "airflow"), *args], env=self.env, capture_output=True, text=True, timeout=300)
        if check and run.returncode != 0:
            raise AssertionError(f"airflow {' '.join(args)} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
        return run

    def start(self, api_port: int) -> None:
        for name, argv in COMPONENTS.items():
            log = open(self.home / f"{name}.log", "w")  # noqa: SIM115 - closed in stop()
            self.processes[name] = subprocess.Popen(
                [str(BIN / "airflow"), *(a.format(api_port=api_port) for a in argv)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.meta.dispose()

    def logs(self) -> str:
        parts = []
        for name in self.processes:
            tail = (self.home / f"{name}.log").read_text(errors="replace")[-2500:]
            parts.append(f"----- {name} -----\n{tail}")
        for path in sorted((self.home / "logs").rglob("*.log"))[-6:]:
            parts.append(f"----- {path.relative_to(self.home)} -----\n{path.read_text(errors='replace')[-2500:]}")
        return "\n".join(parts)

    def check_alive(self) -> None:
        dead = {n: p.returncode for n, p in self.processes.items() if p.poll() is not None}
        if dead:
            raise AssertionError(f"stack processes exited: {dead}\n{self.logs()}")

    def wait_for(self, what: str, probe, timeout: float = 300):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            found = probe()
            if found:
                return found
            time.sleep(2)
        raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")

    def parsed_dags(self) -> set[str]:
        with self.meta.connect() as conn:
            return set(conn.execute(text("SELECT dag_id FROM serialized_dag")).scalars())

    def runs(self, dag_id: str) -> list[dict]:
        with self.meta.connect() as conn:
            rows = conn.execute(
                text("SELECT run_id, run_type, state, logical_date, conf FROM dag_run WHERE dag_id = :d ORDER BY id"),
                {"d": dag_id},
            ).mappings()
            return [dict(r) for r in rows]

    def finished(self, dag_id: str, count: int) -> list[dict] | None:
        runs = self.runs(dag_id)
        done = [r for r in runs if r["state"] in ("success", "failed")]
        return runs if len(runs) >= count and len(done) == len(runs) else None

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        with self.meta.connect() as conn:
            rows = conn.execute(
                text("SELECT task_id, state FROM task_instance WHERE dag_id = :d AND run_id = :r"),
                {"d": dag_id, "r": run_id},
            )
            return {task: state for task, state in rows}


def _contracts(world: GeneratedScenario, day: date, start: date) -> dict:
    state = world.state(day)
    org = state.orgs.record(state.orgs.handles[0])
    return {"accounts": [{
        "account_id": "STACK", "name": org["OrgName"], "vsa_org_id": org["OrgId"],
        "contracts": [{
            "contract_id": "C-STACK", "currency": "USD", "billing_day": 1, "start_date": start.isoformat(),
            "notify_emails": ["billing@customer.example"],
            "services": [{
                "service_id": "S-STACK-EP", "name": "Managed endpoint", "unit_price": "12.00",
                "units_source": "rmm_agent_count", "start_date": start.isoformat(),
            }],
        }],
    }]}


def test_a_night_a_backfill_with_a_gap_and_get_units_now_on_celery(
    tmp_path, pg_warehouse_url, metadata_db, redis_broker, local_smtp
):
    inbox = local_smtp
    broker_url, key_prefix = redis_broker
    raw_path = tmp_path / "raw"
    world = GeneratedScenario(seed=7, orgs=2, agents=60, start=date.today() - timedelta(days=60), daily_churn=0.2)
    sim = SimulatorServer(world, date=datetime.now(UTC).date()).start()
    api_port = _free_port()
    home = tmp_path / "airflow"
    home.mkdir()
    server = make_url(PG_ADMIN).set(database=metadata_db)
    meta_url = server.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    result_backend = "db+" + server.set(drivername="postgresql").render_as_string(hide_password=False)
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta_url,
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": key_prefix,
        "AIRFLOW__CELERY__RESULT_BACKEND": result_backend,
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW_CONN_BILLING_WAREHOUSE": pg_warehouse_url,
        "AIRFLOW_CONN_VSA_DEFAULT": sim.connection_json(),
        "AIRFLOW_CONN_SMTP_DEFAULT": local_smtp.connection_json,
        "AGENT_BILLING_RAW_PATH": str(raw_path),
        "AGENT_BILLING_DATA_TEAM_EMAILS": "data-team@msp.example",
        "GX_ANALYTICS_ENABLED": "False",
    }
    warehouse = connect_warehouse(pg_warehouse_url)
    stack = Stack(home, env)
    try:
        # Tonight's slot: the latest 02:00 (UTC, the default cron) before now.
        now = datetime.now(UTC)
        night = (now - timedelta(hours=2)).date()
        sim.set_date(night)
        apply_contracts(warehouse, _contracts(world, night, start=night - timedelta(days=40)))
        # Two of the three backfilled nights were landed when they happened; the middle one
        # was missed (more than 36 h ago, no landing): a gap.
        settings = Settings(raw_path=raw_path, late_observation="allow")
        landed = [night - timedelta(days=3), night - timedelta(days=1)]
        for day in landed:
            sim.set_date(day)
            extract_step(warehouse, settings, day, lambda: VsaClient.from_connection(parse_connection("vsa_default", sim.connection_json())))
        sim.set_date(night)

        stack.airflow("db", "migrate")
        stack.start(api_port)
        stack.wait_for("the DAGs to be parsed", lambda: set(DAG_IDS) <= stack.parsed_dags())
        for dag_id in DAG_IDS:
            stack.airflow("dags", "unpause", dag_id)

        # 1. Unpausing runs the latest slot at once; its asset event triggers billing.
        (scheduled,) = stack.wait_for("the scheduled night", lambda: stack.finished("vsa_asset_sync", 1))
        assert scheduled["state"] == "success", stack.task_states("vsa_asset_sync", scheduled["run_id"])
        assert scheduled["run_type"] == "scheduled"
        (billing,) = stack.wait_for("asset-triggered billing", lambda: stack.finished("agent_billing", 1))
        assert billing["run_type"] == "asset_triggered"
        assert billing["state"] == "success", stack.task_states("agent_billing", billing["run_id"])
        with warehouse.connect() as conn:
            assert conn.execute(text("SELECT status FROM sync_runs WHERE snapshot_date = :d"), {"d": night}).scalar() == "complete"
            units = conn.execute(text("SELECT units FROM service_unit_counts WHERE snapshot_date = :d"), {"d": night}).scalar()
            invoices = conn.execute(text("SELECT invoice_id, total FROM invoices ORDER BY invoice_month")).all()
        assert units and units > 0
        assert invoices and invoices[-1].invoice_id == f"INV-C-STACK-{night:%Y-%m}"

        # 2. A backfill of three nights, one of them a gap, in date order.
        first, last = night - timedelta(days=3), night - timedelta(days=1)
        stack.airflow(
            "backfill", "create", "--dag-id", "vsa_asset_sync", "--from-date", f"{first}T00:00:00+00:00",
            "--to-date", f"{last}T23:00:00+00:00", "--max-active-runs", "1", "--reprocess-behavior", "completed",
        )
        runs = stack.wait_for("the backfill", lambda: stack.finished("vsa_asset_sync", 4), timeout=600)
        backfill = [r for r in runs if r["run_type"] == "backfill"]
        assert len(backfill) == 3
        with warehouse.connect() as conn:
            status = dict(conn.execute(text(
                "SELECT snapshot_date, status FROM sync_runs WHERE snapshot_date BETWEEN :a AND :b"),
                {"a": first, "b": last}).all())
        status = {date.fromisoformat(str(k)[:10]): v for k, v in status.items()}
        assert status == {first: "complete", first + timedelta(days=1): "gap", last: "complete"}
        by_date = {r["logical_date"].date(): r for r in backfill}
        assert by_date[first]["state"] == by_date[last]["state"] == "success"
        gap_run = by_date[first + timedelta(days=1)]
        assert gap_run["state"] != "failed", stack.task_states("vsa_asset_sync", gap_run["run_id"])

        # 3. Get Units Now: VSA has moved on since the night; the change is recorded and mailed.
        sim.set_date(night + timedelta(days=2))
        stack.airflow("dags", "trigger", "get_units_now", "--conf", json.dumps({"service_id": "S-STACK-EP"}))
        (press,) = stack.wait_for("Get Units Now", lambda: stack.finished("get_units_now", 1))
        assert press["state"] == "success", stack.task_states("get_units_now", press["run_id"])
        with warehouse.connect() as conn:
            reading = conn.execute(text("SELECT units FROM units_now_readings WHERE service_id = 'S-STACK-EP'")).scalar()
            outbox = dict(conn.execute(text("SELECT message_id, sent_at FROM notification_outbox")).all())
        assert reading is not None
        unsent = [m for m, sent in outbox.items() if sent is None]
        assert not unsent, unsent
        subjects = inbox.subjects()
        assert any(f"Snapshot {first + timedelta(days=1)} recorded as a gap" in s for s in subjects), subjects
        assert any(s.startswith("[agent-billing] Unit changes for C-STACK on ") for s in subjects), subjects
        if reading != units:
            assert any("S-STACK-EP now" in s for s in subjects), subjects
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.stop()
        sim.stop()
        warehouse.dispose()
