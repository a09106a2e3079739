"""Benchmark: a night's unit-history work after a year of history vs on the second night.

6,400 agent-counted services (3 % of them ended during the year, so they are no longer
counted), one daily ``service_unit_counts`` row each, a unit change every ~2 weeks and a few
Get Units Now presses. Two warehouses are built side by side, one at its second night and one
after 365 nights, and the same steps are timed on each, the two taking turns: the diff (the
night completes and its window of unit changes is derived, as ``diff_step`` does after its
quarantine check), a release of a quarantined night (``release_snapshot``) and a Get Units Now
press (``record_reading``: the database part of a press; the VSA count is one HTTP call
whatever the history). Target: day 365 ≤ 1.2 × day 2.

Each timed run starts from the same settled state on both nights: the untimed set-up of its
step, then a garbage collection and (SQLite) an emptied write-ahead log, so that a run is not
charged for a collection or a checkpoint of what came before it. Taking turns exposes both
nights to the same load on the machine.

``python -m benchmarks.unit_history ENGINE`` (postgresql or sqlite) prints one JSON line;
``run()`` drives both engines and returns the report section.
"""

from __future__ import annotations

import gc
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from functools import cache
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from benchmarks import PG_ADMIN_URL, settle_postgres

SERVICES = int(os.environ.get("BENCH_HISTORY_SERVICES", "6400"))
DAYS = int(os.environ.get("BENCH_HISTORY_DAYS", "365"))
PER_CONTRACT = 64
FIRST = date(2024, 1, 1)
MAX_GROWTH = 1.2
ROOT = Path(__file__).resolve().parents[1]
STEPS = ("diff", "release", "press")
WARM_UP, REPS = 1, 9  # runs per step and night: untimed, then timed (the median counts)


def run() -> str:
    results = []
    for engine in ("postgresql", "sqlite"):
        child = subprocess.run(
            [sys.executable, "-m", "benchmarks.unit_history", engine],
            cwd=ROOT, capture_output=True, text=True, timeout=3600, check=False,
        )
        if child.returncode != 0:
            raise RuntimeError(f"the unit-history benchmark failed:\n{child.stderr[-3000:]}")
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))
    return _report(results)


def _report(results: list[dict]) -> str:
    rows, met = [], True
    for r in results:
        for step in STEPS:
            early, late = r[f"{step}_day2"], r[f"{step}_last"]
            ratio = late / early
            met = met and ratio <= MAX_GROWTH
            rows.append(f"| {r['engine']} | {step} | {early * 1000:.0f} ms | {late * 1000:.0f} ms | {ratio:.2f} |")
    first = results[0]
    loads = ", ".join(f"{r['engine']} {r['load'][0]:.2f} → {r['load'][1]:.2f}" for r in results)
    return "\n".join([
        "## Unit history: a night after a year vs the second night",
        "",
        f"{first['services']:,} services counted in VSA ({first['ended']} ended during the year), "
        f"{first['days']} nights of `service_unit_counts` ({first['counts']:,} rows), "
        f"{first['changes']:,} unit changes and {first['readings']:,} Get Units Now readings by the last night. "
        "*diff*: the night completes and its unit changes are derived (what `diff_step` does "
        "after its quarantine check; before each run the night is set back to not complete, untimed); "
        "*release*: `release_snapshot` of a quarantined night; *press*: `record_reading`, the "
        "database part of a Get Units Now press. A warehouse at its second night and one after "
        "the year (written night after night, so a date's rows lie together as after a real year) "
        f"are built side by side and take turns (ABBA), {WARM_UP} untimed and {REPS} timed runs of each step "
        "on each, the median counts. Every run starts settled: the fill VACUUM ANALYZEd and "
        "checkpointed once, then before each run a garbage collection and, on SQLite, an emptied "
        "WAL (a run pays its own log writes and fsync, not the checkpoint of what came before it; "
        "its own pages are copied back by a later checkpoint, as on PostgreSQL). Each engine "
        f"runs in its own process; 1-minute load average before → after: {loads} (2 shared cores).",
        "",
        f"| engine | step | night 2 | night {first['days']} | ratio |",
        "|---|---|---:|---:|---:|",
        *rows,
        "",
        f"Target: night {first['days']} ≤ {MAX_GROWTH} × night 2 for each. Target met: **{'yes' if met else 'no'}**.",
    ])


@cache
def _history(n: int) -> tuple[date | None, list[int]]:
    """A service's end date (3 % end mid-year) and its daily units while active."""
    rng = random.Random(n)
    end = FIRST + timedelta(days=rng.randrange(DAYS // 10, DAYS - DAYS // 10)) if rng.random() < 0.03 else None
    units, daily = rng.randint(1, 60), []
    for day in range(DAYS):
        if end is not None and FIRST + timedelta(days=day) > end:
            break
        if day and rng.random() < 1 / 14:
            units = max(0, units + rng.choice((-3, -2, -1, 1, 1, 2, 3)))
        daily.append(units)
    return end, daily


def observed(day: date) -> datetime:
    return datetime.combine(day, clock(2), tzinfo=UTC)


def _fill(engine, first_day: int, last_day: int) -> dict:
    """Counts, complete runs and nightly changes of days ``first_day``..``last_day`` (0-based),
    plus one press per ~50 services a week. Written night after night, as the nights would have
    written them: a table's rows of a date lie together, as they do after a real year."""
    from agent_billing.sync.changes import change_id
    from agent_billing.warehouse.bulk import bulk_insert

    days = range(first_day, last_day + 1)

    def counts():
        for d in days:
            for n in range(SERVICES):
                daily = _history(n)[1]
                if d < len(daily):
                    yield (f"S{n:05}", FIRST + timedelta(days=d), daily[d])

    def changes():
        for d in days:
            day = FIRST + timedelta(days=d)
            for n in range(SERVICES):
                daily = _history(n)[1]
                if 0 < d < len(daily) and daily[d] != daily[d - 1]:
                    yield (change_id(f"S{n:05}", day, "nightly_sync"), f"S{n:05}", day, daily[d - 1],
                           daily[d], daily[d] - daily[d - 1], "nightly_sync", observed(day))

    def readings():
        for d in days:
            if d % 7 == 3:
                day = FIRST + timedelta(days=d)
                for n in range(d % 50, SERVICES, 50):
                    at = datetime.combine(day, clock(20), tzinfo=UTC)
                    yield (f"S{n:05}", at, day, _history(n)[1][min(d, len(_history(n)[1]) - 1)])

    with engine.begin() as conn:
        bulk_insert(conn, "sync_runs", ("snapshot_date", "status", "observed_at", "updated_at"),
                    ((FIRST + timedelta(days=d), "complete", observed(FIRST + timedelta(days=d)),
                      datetime.now(UTC)) for d in days))
        n_counts = bulk_insert(conn, "service_unit_counts", ("service_id", "snapshot_date", "units"), counts())
        n_changes = bulk_insert(conn, "unit_changes", ("change_id", "service_id", "effective_date", "units_before",
                                                       "units_after", "delta", "source", "detected_at"), changes())
        n_readings = bulk_insert(conn, "units_now_readings", ("service_id", "observed_at", "observed_date", "units"),
                                 readings())
        conn.execute(text("ANALYZE"))
    return {"counts": n_counts, "changes": n_changes, "readings": n_readings}


def _settle(engine) -> None:
    """Let the bulk fill settle (statistics, vacuum, checkpoint) so that it does not run in the
    background of the measurement."""
    if engine.dialect.name == "postgresql":
        settle_postgres(engine)
    else:
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    _ready(engine)


def _ready(engine) -> None:
    """Before each timed run, on both nights alike: no garbage of earlier runs left to collect
    and, on SQLite, an empty write-ahead log (its automatic checkpoint would otherwise make a
    run copy back the pages of the untimed set-up or of the run before)."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    gc.collect()


def _measure(engines: dict, settings, nights: dict) -> dict[str, dict[str, float]]:
    """Diff, release and press of each warehouse's night (its counts are loaded; the run is not
    yet complete), the warehouses taking turns run by run."""
    for engine in engines.values():
        _settle(engine)
    from agent_billing.sync import changes
    from agent_billing.sync.pipeline import release_snapshot
    from agent_billing.sync.runs import record_run

    def diff(which: str) -> float:
        engine, night = engines[which], nights[which]
        with engine.begin() as conn:  # untimed: the night is not diffed yet (no changes of its own)
            changes.lock_unit_history(conn)
            record_run(conn, night, "failed", message="benchmark: not diffed yet")
            changes.rederive_from(conn, night, settings.tz)
        _ready(engine)
        started = time.perf_counter()
        with engine.begin() as conn:
            changes.lock_unit_history(conn)
            record_run(conn, night, "complete", observed_at=observed(night), message=None)
            changes.rederive_from(conn, night, settings.tz)
        return time.perf_counter() - started

    def release(which: str) -> float:
        engine, night = engines[which], nights[which]
        with engine.begin() as conn:  # untimed: the night is held
            changes.lock_unit_history(conn)
            record_run(conn, night, "quarantined", message="benchmark")
            changes.rederive_from(conn, night, settings.tz)
        _ready(engine)
        started = time.perf_counter()
        release_snapshot(engine, settings, night)
        return time.perf_counter() - started

    presses = {which: iter(range(10, 60)) for which in engines}

    def press(which: str) -> float:
        engine, night, minute = engines[which], nights[which], next(presses[which])
        at = datetime.combine(night, clock(15, minute), tzinfo=UTC)
        _ready(engine)
        started = time.perf_counter()
        with engine.begin() as conn:
            changes.record_reading(conn, settings.tz, "S00001", at, 1000 + minute)
        return time.perf_counter() - started

    found: dict[str, dict[str, float]] = {which: {} for which in engines}
    for name, step in (("diff", diff), ("release", release), ("press", press)):
        times: dict[str, list[float]] = {which: [] for which in engines}
        for run in range(WARM_UP + REPS):
            for which in (list(engines) if run % 2 == 0 else list(engines)[::-1]):
                took = step(which)
                if run >= WARM_UP:
                    times[which].append(took)
        for which in engines:
            found[which][name] = statistics.median(times[which])
    return found


def _child(kind: str) -> None:
    from agent_billing.settings import Settings
    from agent_billing.warehouse import connect_warehouse, upgrade
    from agent_billing.warehouse.bulk import bulk_insert

    work = Path(tempfile.mkdtemp(prefix="bench_history_"))
    settings = Settings(raw_path=work / "raw")
    admin, names, urls = None, [], {}
    if kind == "postgresql":
        admin = connect_warehouse(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    for which in ("early", "late"):
        if admin is not None:
            name = f"ab_bench_{uuid.uuid4().hex[:10]}"
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            names.append(name)
            urls[which] = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        else:
            urls[which] = f"sqlite:///{work / f'{which}.db'}"
    engines = {}
    try:
        contracts = SERVICES // PER_CONTRACT
        ends = [_history(n)[0] for n in range(SERVICES)]
        for which, url in urls.items():
            engine = engines[which] = connect_warehouse(url)
            upgrade(engine)
            with engine.begin() as conn:
                bulk_insert(conn, "accounts", ("account_id", "name", "vsa_org_id"),
                            ((f"A{c:04}", f"Account {c}", str(10**20 + c)) for c in range(contracts)))
                bulk_insert(conn, "contracts", ("contract_id", "account_id", "currency", "billing_day", "start_date"),
                            ((f"C{c:04}", f"A{c:04}", "USD", 1, FIRST) for c in range(contracts)))
                bulk_insert(conn, "services", ("service_id", "contract_id", "name", "unit_price", "units_source",
                                               "vsa_machine_group_id", "start_date", "end_date"),
                            ((f"S{n:05}", f"C{n % contracts:04}", f"Agents {n}", "10.0000", "rmm_agent_count",
                              str(10**20 + n), FIRST, ends[n]) for n in range(SERVICES)))
            _fill(engine, 0, 0)
        _fill_counts_only(engines["early"], 1)
        _fill(engines["late"], 1, DAYS - 2)
        _fill_counts_only(engines["late"], DAYS - 1)
        with engines["late"].connect() as conn:
            sizes = {key: conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one() for key, table in (
                ("counts", "service_unit_counts"), ("changes", "unit_changes"), ("readings", "units_now_readings"))}
        load_before = os.getloadavg()[0]
        found = _measure(engines, settings, {"early": FIRST + timedelta(days=1), "late": FIRST + timedelta(days=DAYS - 1)})
        load_after = os.getloadavg()[0]
    finally:
        for engine in engines.values():
            engine.dispose()
        if admin is not None:
            with admin.connect() as conn:
                for name in names:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        subprocess.run(["rm", "-rf", str(work)], check=False)
    print(json.dumps({
        "engine": kind, "services": SERVICES, "days": DAYS, "ended": sum(e is not None for e in ends),
        "load": [load_before, load_after], **sizes,
        **{f"{k}_day2": v for k, v in found["early"].items()}, **{f"{k}_last": v for k, v in found["late"].items()},
    }))


def _fill_counts_only(engine, d: int) -> None:
    """The night's counts, as count_step leaves them before its diff."""
    from agent_billing.warehouse.bulk import bulk_insert

    day = FIRST + timedelta(days=d)
    with engine.begin() as conn:
        bulk_insert(conn, "service_unit_counts", ("service_id", "snapshot_date", "units"),
                    ((f"S{n:05}", day, daily[d]) for n in range(SERVICES) if d < len(daily := _history(n)[1])))


if __name__ == "__main__":
    _child(sys.argv[1])
