"""Benchmark: load + count + diff of a 1M-agent snapshot on PostgreSQL vs a plain COPY.

Two raw landings (consecutive days of a generated 1M-agent MSP with daily churn) are written
first, in a separate process. Then, each in a fresh process so that its peak RSS is its own:
the pipeline's load + count + diff of day 1 and day 2 (the day-2 diff finds real changes), and
a plain COPY of day 2's agent rows, read from the same landing, into an unindexed table.
Target: pipeline(day 2) ≤ 2.5 × COPY, peak RSS ≤ 1 GB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

AGENTS = int(os.environ.get("BENCH_SYNC_AGENTS", "1000000"))
ORGS = max(3, AGENTS // 350)
DAY1 = date(2024, 3, 1)
DAY2 = DAY1 + timedelta(days=1)
ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def run() -> str:
    from sqlalchemy import text

    from agent_billing.warehouse import connect_warehouse

    work = Path(tempfile.mkdtemp(prefix="bench_sync_"))
    name = f"bench_sync_{uuid.uuid4().hex[:8]}"
    admin = connect_warehouse(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        prepared = _child("prepare", url, work)
        day1 = _child("pipeline", url, work, DAY1)
        day2 = _child("pipeline", url, work, DAY2)
        copy = _child("copy", url, work, DAY2)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        subprocess.run(["rm", "-rf", str(work)], check=False)
    ratio = day2["seconds"] / copy["seconds"]
    peak = max(day1["peak_mb"], day2["peak_mb"])
    share = day2["history_rows"] / day2["snapshot_rows"]
    met = ratio <= 2.5 and peak <= 1024
    return "\n".join([
        "## Sync: load + count + diff of a 1M-agent snapshot (PostgreSQL)",
        "",
        f"{AGENTS:,} agents in {ORGS:,} orgs, {prepared['services']:,} services "
        f"(whole org, machine group with subgroups, view); landings written beforehand "
        f"({prepared['seconds']:.0f} s). Each measurement runs in a fresh process.",
        "",
        "| step | rows | seconds | peak RSS |",
        "|---|---:|---:|---:|",
        f"| pipeline day 1: load + count (first counts) | {day1['agents']:,} agents | {day1['seconds']:.1f} | {day1['peak_mb']:.0f} MB |",
        f"| pipeline day 2: load + count + diff ({day2['changes']:,} unit changes, {day2['change_agents']:,} agents behind them) | {day2['agents']:,} agents | {day2['seconds']:.1f} | {day2['peak_mb']:.0f} MB |",
        f"| plain COPY of day 2's agent rows into an unindexed table | {copy['agents']:,} | {copy['seconds']:.1f} | {copy['peak_mb']:.0f} MB |",
        "",
        f"Ratio pipeline / COPY: **{ratio:.2f}** (target ≤ 2.5); peak RSS **{peak:.0f} MB** (target ≤ 1024 MB). "
        f"Target met: **{'yes' if met else 'no'}**.",
        "",
        f"Storage: the quiet day 2 (0.4 % churn) wrote **{day2['history_rows']:,}** rows to the interval history "
        f"(runs opened or closed on it) against {day2['snapshot_rows']:,} rows of its snapshot (agents, view members, "
        f"service agents, kept as staging for the retention period): **{100 * share:.2f} %** (target ≤ 5 %).",
    ])


def _child(step: str, url: str, work: Path, day: date | None = None) -> dict:
    args = [sys.executable, "-m", "benchmarks.sync_load", step, url, str(work)] + ([day.isoformat()] if day else [])
    out = subprocess.run(args, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if out.returncode != 0:
        raise RuntimeError(f"benchmark step {step} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _prepare(url: str, work: Path) -> dict:
    from agent_billing.contracts import apply_contracts
    from agent_billing.sync.landing import RawLanding
    from agent_billing.warehouse import connect_warehouse, upgrade
    from vsa_simulator.generated import GeneratedScenario

    started = time.perf_counter()
    world = GeneratedScenario(seed=99, orgs=ORGS, agents=AGENTS, start=DAY1 - timedelta(days=10), daily_churn=0.004)
    engine = connect_warehouse(url)
    upgrade(engine)
    state = world.state(DAY1)
    views = {state.views.record(h)["ViewDefName"]: state.views.record(h)["ViewDefId"] for h in state.views.handles}
    roots = {}
    for h in state.groups.handles:
        g = state.groups.record(h)
        if g["ParentMachineGroupId"] is None:
            roots[g["OrgId"]] = g["MachineGroupId"]
    accounts, services = [], 0
    for n, h in enumerate(state.orgs.handles):
        org = state.orgs.record(h)
        svc = [{"service_id": f"S{n}-ALL", "name": "all", "unit_price": "10", "units_source": "rmm_agent_count",
                "start_date": "2024-01-01"},
               {"service_id": f"S{n}-TREE", "name": "tree", "unit_price": "10", "units_source": "rmm_agent_count",
                "vsa_machine_group_id": roots[org["OrgId"]], "start_date": "2024-01-01"}]
        if n % 4 == 0:
            svc.append({"service_id": f"S{n}-SRV", "name": "servers", "unit_price": "40",
                        "units_source": "rmm_agent_count", "vsa_view_id": views["Billable - Servers"],
                        "start_date": "2024-01-01"})
        services += len(svc)
        accounts.append({"account_id": f"A{n}", "name": org["OrgName"], "vsa_org_id": org["OrgId"],
                         "contracts": [{"contract_id": f"C{n}", "currency": "USD", "start_date": "2024-01-01",
                                        "services": svc}]})
    apply_contracts(engine, {"accounts": accounts})
    for day in (DAY1, DAY2):
        s = world.state(day)
        with RawLanding(work / "raw", day).staging() as stage:
            stage.meta = {"observed_at": f"{day.isoformat()}T02:00:00+00:00", "source": "benchmark"}
            for name, table in (("orgs.jsonl.gz", s.orgs), ("machine_groups.jsonl.gz", s.groups),
                                ("agents.jsonl.gz", s.agents), ("views.jsonl.gz", s.views)):
                stage.write_lines(name, (json.dumps(table.record(h)) for h in table.handles))
                stage.files[name]["total_records"] = stage.files[name]["records"]
            members = s.view_members(views["Billable - Servers"])
            name = f"agents_in_view/{views['Billable - Servers']}.jsonl.gz"
            stage.write_lines(name, (json.dumps(members.record(h)) for h in members.handles))
            stage.files[name]["total_records"] = stage.files[name]["records"]
    return {"services": services, "seconds": time.perf_counter() - started}


def _pipeline(url: str, work: Path, day: date) -> dict:
    from sqlalchemy import text

    from agent_billing.settings import Settings
    from agent_billing.sync.pipeline import count_step, diff_step, load_step
    from agent_billing.warehouse import connect_warehouse

    engine = connect_warehouse(url)
    settings = Settings(raw_path=work / "raw", quarantine_share="1")
    started = time.perf_counter()
    loaded = load_step(engine, settings, day)
    count_step(engine, settings, day)
    diff_step(engine, settings, day)
    seconds = time.perf_counter() - started
    with engine.connect() as conn:
        changes = conn.execute(text("SELECT COUNT(*) FROM unit_changes WHERE effective_date = :d"), {"d": day}).scalar()
        agents = conn.execute(
            text("SELECT COUNT(*) FROM unit_change_agents a JOIN unit_changes c ON c.change_id = a.change_id "
                 "WHERE c.effective_date = :d"), {"d": day}).scalar()
        # rows the night wrote to what lasts (runs opened or closed on it) vs the night's snapshot
        history = staging = 0
        for table in ("vsa_agent_history", "vsa_view_member_history", "service_agent_history"):
            history += conn.execute(
                text(f"SELECT COUNT(*) FROM {table} WHERE valid_from = :d OR valid_to = :d"), {"d": day}).scalar()
        for table in ("vsa_agents", "vsa_view_members", "service_agents"):
            staging += conn.execute(text(f"SELECT COUNT(*) FROM {table} WHERE snapshot_date = :d"), {"d": day}).scalar()
    return {"seconds": seconds, "agents": loaded.detail["agents"], "changes": changes,
            "change_agents": agents, "peak_mb": _peak_mb(), "history_rows": history, "snapshot_rows": staging}


def _copy(url: str, work: Path, day: date) -> dict:
    from sqlalchemy import text

    from agent_billing.sync.landing import RawLanding
    from agent_billing.sync.load import AGENT_COLUMNS, _agent_rows
    from agent_billing.warehouse import connect_warehouse
    from agent_billing.warehouse.bulk import bulk_insert

    engine = connect_warehouse(url)
    landing = RawLanding(work / "raw", day)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE bench_copy (LIKE vsa_agents)"))  # LIKE copies no index
    started = time.perf_counter()
    with engine.begin() as conn:
        rows = bulk_insert(conn, "bench_copy", AGENT_COLUMNS, _agent_rows(landing, day))
    return {"seconds": time.perf_counter() - started, "agents": rows, "peak_mb": _peak_mb()}


if __name__ == "__main__":
    step, url, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    day = date.fromisoformat(sys.argv[4]) if len(sys.argv) > 4 else None
    result = {"prepare": lambda: _prepare(url, work), "pipeline": lambda: _pipeline(url, work, day),
              "copy": lambda: _copy(url, work, day)}[step]()
    print(json.dumps(result))
