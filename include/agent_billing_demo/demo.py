"""``agent-billing demo`` (``make demo``): the main job end to end on the embedded default.

A SQLite warehouse and SQLite Airflow metadata under ``data/demo/``, the VSA simulator with
a realistic MSP (a few dozen orgs, a few thousand agents, daily churn), and the real DAGs run
through Airflow night after night: ``vsa_asset_sync`` for each night, then ``agent_billing``
for the snapshot date carried by the asset event that night emitted. Airflow runs each DAG
in-process with ``dag.test()`` (no scheduler to start, fast on two cores); the demo plays the
scheduler's part of handing each asset event to the billing DAG. Ends with a readable summary.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import yaml

from agent_billing.errors import OperationFailed, UserError
from agent_billing.settings import forget_deployment_settings

ROOT = Path(__file__).resolve().parents[2]
HOME_MARKER = ".agent-billing-demo-home"  # written into every home the demo creates


def prepare_home(home: Path) -> None:
    """Make ``home`` an empty demo home. Only a directory that carries the demo's marker (one
    the demo created) is ever emptied; a non-empty directory without it is refused, so a
    mistyped ``--home`` can never delete someone's files."""
    if home.exists() and not home.is_dir():
        raise UserError(f"--home {home} is a file, not a directory: choose a new or empty directory")
    if home.is_dir() and any(home.iterdir()):
        if not (home / HOME_MARKER).is_file():
            raise UserError(
                f"--home {home} is not empty and was not created by the demo: "
                "choose a new or empty directory (the demo only ever empties its own homes)"
            )
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    (home / HOME_MARKER).write_text(
        "Created by `agent-billing demo`, which empties this directory when it runs again.\n",
        encoding="utf-8",
    )


def _env(home: Path) -> dict[str, str]:
    return {
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow' / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW_CONN_BILLING_WAREHOUSE": f"sqlite:///{home / 'warehouse.db'}",
        "AGENT_BILLING_RAW_PATH": str(home / "raw"),
        # The nights are replayed after the fact: the simulator serves each night's state.
        "AGENT_BILLING_LATE_OBSERVATION": "allow",
        "GX_ANALYTICS_ENABLED": "False",
    }


class Progress:
    def __init__(self, out: TextIO) -> None:
        self.out, self.started = out, time.monotonic()

    def say(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}] {message}", file=self.out, flush=True)


#: On this night, after February's invoices, finance ends the first contract's server service
#: back-dated to the 10th, as a customer's late notice would: the March invoice credits the
#: days after it (adjustment lines) and ``contract_edits`` keeps the edit.
EDIT_NIGHT, ENDED_ON = date(2025, 2, 14), date(2025, 2, 10)


def end_a_server_service(document: dict[str, Any], end: date) -> str:
    """End the first contract's server service on ``end`` in the contracts document; its id."""
    service = next(s for s in document["accounts"][0]["contracts"][0]["services"] if s["service_id"].endswith("-SRV"))
    service["end_date"] = end.isoformat()
    return service["service_id"]


def demo_contracts(state) -> dict[str, Any]:
    """A contracts document over the simulator's orgs: per org one contract with a workstation
    service and a server service, each through its VSA view, so that no machine is billed twice
    (never-checked-in workstations excluded), and for every third org a manual support block;
    a few contracts post through review, a few invoice on the 15th."""
    views = {state.views.record(h)["ViewDefName"]: state.views.record(h)["ViewDefId"] for h in state.views.handles}
    accounts = []
    for n, h in enumerate(state.orgs.handles):
        org = state.orgs.record(h)
        ref = org["OrgRef"].upper()
        services = [
            {"service_id": f"S-{ref}-EP", "name": "Managed workstation", "unit_price": "12.00",
             "units_source": "rmm_agent_count", "vsa_view_id": views["Billable - Workstations"],
             "exclude_never_checked_in": True, "start_date": "2025-01-01"},
            {"service_id": f"S-{ref}-SRV", "name": "Managed server", "unit_price": "45.50",
             "units_source": "rmm_agent_count", "vsa_view_id": views["Billable - Servers"],
             "start_date": "2025-01-01"},
        ]
        if n % 3 == 0:
            services.append({"service_id": f"S-{ref}-SUP", "name": "Support block", "unit_price": "99.00",
                             "units_source": "manual", "units": 2 + n % 4, "start_date": "2025-01-01"})
        accounts.append({
            "account_id": ref, "name": org["OrgName"], "vsa_org_id": org["OrgId"],
            "contracts": [{
                "contract_id": f"C-{ref}", "currency": "USD" if n % 5 else "EUR",
                "billing_day": 15 if n % 7 == 6 else 1,
                "posting": "review" if n % 10 == 9 else "automatic",
                "start_date": "2025-01-01", "services": services,
            }],
        })
    return {"accounts": accounts}


@contextlib.contextmanager
def _quiet(log_path: Path) -> Iterator[None]:
    """Send Airflow's task logs (printed by dag.test) to a file instead of the terminal."""
    with open(log_path, "a", encoding="utf-8") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        yield


def run_demo(home: Path, *, nights: int = 60, orgs: int = 30, agents: int = 3000, seed: int = 2025,
             out: TextIO = sys.stdout) -> int:
    prepare_home(home)
    progress = Progress(out)
    logging.getLogger().setLevel(logging.WARNING)  # the progress lines tell the story
    # FastAPI's test client (Airflow's in-process API for dag.test) warns on import: not ours.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    start = date(2025, 1, 1)
    (home / "airflow").mkdir()
    forget_deployment_settings(os.environ)  # an operator's shell: never its databases or mail
    os.environ.update(_env(home))
    sys.path[:0] = [str(ROOT / "plugins"), str(ROOT / "dags")]

    from agent_billing.contracts import apply_contracts
    from agent_billing.warehouse import connect_warehouse, upgrade
    from vsa_simulator.generated import GeneratedScenario
    from vsa_simulator.server import SimulatorServer

    progress.say(f"building the simulated MSP: {orgs} orgs, {agents} agents, seed {seed}")
    world = GeneratedScenario(seed=seed, orgs=orgs, agents=agents, start=start - timedelta(days=30), daily_churn=0.004)
    server = SimulatorServer(world, date=start).start()
    os.environ["AIRFLOW_CONN_VSA_DEFAULT"] = server.connection_json()
    progress.say(f"VSA simulator serving at {server.base_url}")

    engine = connect_warehouse()
    upgrade(engine)
    contracts_file = home / "contracts.yaml"
    document = demo_contracts(world.state(start))
    contracts_file.write_text(yaml.safe_dump(document, sort_keys=False))
    report = apply_contracts(engine, contracts_file)
    progress.say(f"warehouse {home / 'warehouse.db'}: {report.summary()}")

    progress.say("preparing Airflow (SQLite metadata) and parsing the DAGs")
    log_path = home / "airflow-task-logs.txt"
    with _quiet(log_path):
        from airflow.dag_processing.dagbag import DagBag
        from airflow.utils import db

        db.initdb()
        dagbag = DagBag(dag_folder=str(ROOT / "dags"))
    if dagbag.import_errors:
        raise OperationFailed(f"DAG import errors: {dagbag.import_errors}")
    sync_dag, billing_dag = dagbag.get_dag("vsa_asset_sync"), dagbag.get_dag("agent_billing")
    # Airflow 3.3.2's dag.test() fails a successful run of a DAG with a deadline alert when it
    # prunes the run's deadlines (its in-memory DAG lacks the ids the scheduler's has).
    sync_dag.deadline = None

    try:
        for n in range(nights):
            night = start + timedelta(days=n)
            if night == EDIT_NIGHT:
                ended = end_a_server_service(document, ENDED_ON)
                contracts_file.write_text(yaml.safe_dump(document, sort_keys=False))
                edit = apply_contracts(engine, contracts_file)
                progress.say(f"contracts edited before the night of {night}: service {ended} ends {ENDED_ON}; "
                             + "; ".join(edit.backdated))
            server.set_date(night)
            with _quiet(log_path):
                run = sync_dag.test(logical_date=datetime.combine(night, dtime(2), tzinfo=UTC))
            if run.state != "success":
                raise OperationFailed(f"vsa_asset_sync failed for {night}; task logs in {log_path}")
            billed = []
            for snapshot_date in _asset_event_dates(run.run_id):
                with _quiet(log_path):
                    bill = billing_dag.test(run_conf={"as_of": snapshot_date})
                if bill.state != "success":
                    raise OperationFailed(f"agent_billing failed for {snapshot_date}; task logs in {log_path}")
                billed.append(snapshot_date)
            progress.say(f"night {n + 1:>2}/{nights} {night}: {_night_line(engine, night)}; billed as of {', '.join(billed) or '-'}")
    finally:
        server.stop()
    print(file=out)
    print(summary(engine, home, log_path), file=out)
    progress.say("demo finished")
    return 0


def _asset_event_dates(run_id: str) -> list[str]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        events = session.query(AssetEvent).filter(AssetEvent.source_run_id == run_id).all()
        return sorted({e.extra["snapshot_date"] for e in events})


def _night_line(engine, night: date) -> str:
    from sqlalchemy import text

    with engine.connect() as conn:
        run = conn.execute(text("SELECT status, agents_total FROM sync_runs WHERE snapshot_date = :d"), {"d": night}).first()
        changes = conn.execute(
            text("SELECT COUNT(*), COALESCE(SUM(delta), 0) FROM unit_changes WHERE effective_date = :d"), {"d": night}
        ).one()
        invoices = conn.execute(text("SELECT COUNT(*) FROM invoices WHERE as_of = :d"), {"d": night}).scalar()
    return f"{run[0]}, {run[1]} agents, {changes[0]} unit changes (net {changes[1]:+d}), {invoices} invoices posted"


def summary(engine, home: Path, log_path: Path) -> str:
    from sqlalchemy import text

    from agent_billing.billing.money import quantize
    from agent_billing.warehouse.values import as_decimal, as_utc

    lines = ["=" * 78, "Unit changes per contract", "-" * 78]
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT s.contract_id, COUNT(*), SUM(CASE WHEN uc.delta > 0 THEN uc.delta ELSE 0 END), "
            "SUM(CASE WHEN uc.delta < 0 THEN uc.delta ELSE 0 END) FROM unit_changes uc "
            "JOIN services s ON s.service_id = uc.service_id GROUP BY s.contract_id ORDER BY s.contract_id"
        )).all()
        for contract_id, n, up, down in rows:
            lines.append(f"  {contract_id:<22} {n:>3} changes   +{up} / -{abs(down)} units")
        invoices = conn.execute(text(
            "SELECT invoice_id, contract_id, invoice_date, document_type, currency, total FROM invoices "
            "ORDER BY invoice_date, contract_id"
        )).all()
        lines += ["", f"Invoices ({len(invoices)})", "-" * 78]
        for inv in invoices:
            lines.append(f"  {inv[0]:<28} {str(inv[2])[:10]}  {inv[3]:<11} {inv[4]} {quantize(as_decimal(inv[5]), inv[4]):>12}")
        pick = next((i for i in reversed(invoices) if i[3] == "invoice"), None)
        if pick:
            lines += ["", f"Lines of {pick[0]} ({pick[1]})", "-" * 78]
            for kind, sid, start, end, units, price, days, dip, amount in conn.execute(text(
                "SELECT kind, service_id, period_start, period_end, units, unit_price, days, days_in_period, amount "
                "FROM invoice_lines WHERE invoice_id = :i ORDER BY kind, service_id, period_start"
            ), {"i": pick[0]}):
                lines.append(
                    f"  {kind:<10} {sid:<20} {str(start)[:10]}..{str(end)[:10]} {units:>4} x {as_decimal(price):>8.4f}"
                    f" x {days:>2}/{dip:<2} = {quantize(as_decimal(amount), pick[4]):>10}"
                )
            lines.append(f"  {'total':<70} {quantize(as_decimal(pick[5]), pick[4]):>7}")
        edits = conn.execute(text(
            "SELECT e.entity_id, s.contract_id, e.field, e.old_value, e.new_value, e.applied_at FROM contract_edits e "
            "JOIN services s ON s.service_id = e.entity_id WHERE e.kind = 'service' AND e.action = 'update' "
            "ORDER BY e.edit_id")).all()
        lines += ["", "Contract edits (contract_edits)", "-" * 78] if edits else []
        for service_id, contract_id, field, old, new, applied_at in edits:
            # the service's adjustments posted since the edit, to the second (posted_at is the
            # database's CURRENT_TIMESTAMP: SQLite keeps whole seconds, as text)
            since = as_utc(applied_at).replace(microsecond=0)
            corrections = conn.execute(text(
                "SELECT l.invoice_id, COUNT(*), SUM(l.amount_e4), i.currency FROM invoice_lines l "
                "JOIN invoices i ON i.invoice_id = l.invoice_id "
                "WHERE l.service_id = :s AND l.kind = 'adjustment' AND i.posted_at >= :at "
                "GROUP BY l.invoice_id, i.currency ORDER BY l.invoice_id"),
                {"s": service_id, "at": since if conn.dialect.name == "postgresql" else f"{since:%Y-%m-%d %H:%M:%S}"},
            ).all()
            lines.append(
                f"  {service_id}: {field} {old or '(none)'} -> {new}; "
                + (", ".join(f"{n} adjustment line(s) on {invoice}, {quantize(Decimal(e4) / 10_000, currency)} {currency}"
                             for invoice, n, e4, currency in corrections) or "no correction yet")
                + f" (`agent-billing contracts history {contract_id}`, data dictionary 5.3)")
        pending = dict(conn.execute(text("SELECT posting, COUNT(*) FROM billing_review GROUP BY posting")).all())
        reviewed = conn.execute(text(
            "SELECT contract_id FROM contracts WHERE posting = 'review' ORDER BY contract_id")).scalars().all()
    lines += [
        "",
        "Pending lines (view billing_review): "
        f"{pending.get('automatic', 0)} waiting for their contract's next invoice date, "
        f"{pending.get('review', 0)} waiting for a person to post them",
        *([f"  review contracts ({len(reviewed)}, no invoice until posted): {', '.join(reviewed)}; "
           "see them with `agent-billing review`, post with `agent-billing post --contract C`"] if reviewed else []),
        "",
        f"Warehouse: {home / 'warehouse.db'} (SQLite). Query it, for example:",
        f"  .venv/bin/python -c \"import sqlite3; c = sqlite3.connect('{home / 'warehouse.db'}'); "
        "[print(*r) for r in c.execute('SELECT invoice_id, currency, printf(\\\"%.2f\\\", total) FROM invoices "
        "ORDER BY invoice_id LIMIT 5')]\"",
        *([
            "  or with the command line:",
            f"  AIRFLOW_CONN_BILLING_WAREHOUSE=sqlite:///{(home / 'warehouse.db').resolve()} "
            f".venv/bin/agent-billing invoices export --month {str(invoices[-1][2])[:7]} --format csv",
        ] if invoices else []),
        f"Warnings and task errors of the demo's Airflow runs: {log_path}",
        "Queries finance runs are in docs/data-dictionary.md.",
    ]
    return "\n".join(lines)
