"""Benchmark: a night's unit-history work after a year of history vs on the second night.

6,400 agent-counted services (3 % of them ended during the year, so they are no longer
counted), one daily ``service_unit_counts`` row each, a unit change every ~2 weeks and a few
Get Units Now presses. Timed on the second night and again after 365 nights, each the median
of five: the diff (the night completes and its window of unit changes is derived again, as
``diff_step`` does after its quarantine check), a release of a quarantined night
(``release_snapshot``) and a Get Units Now press (``record_reading``: the database part of a
press; the VSA count is one HTTP call whatever the history). Target: day 365 ≤ 1.2 × day 2.

``python -m benchmarks.unit_history ENGINE`` (postgresql or sqlite) prints one JSON line;
``run()`` drives both engines and returns the report section.
"""

from __future__ import annotations

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
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

SERVICES = int(os.environ.get("BENCH_HISTORY_SERVICES", "6400"))
DAYS = int(os.environ.get("BENCH_HISTORY_DAYS", "365"))
PER_CONTRACT = 64
FIRST = date(2024, 1, 1)
MAX_GROWTH = 1.2
ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get(
    "AGENT_BILLING_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
STEPS = ("diff", "release", "press")


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
    return "\n".join([
        "## Unit history: a night after a year vs the second night",
        "",
        f"{first['services']:,} services counted in VSA ({first['ended']} ended during the year), "
        f"{first['days']} nights of `service_unit_counts` ({first['counts']:,} rows), "
        f"{first['changes']:,} unit changes and {first['readings']:,} Get Units Now readings by the last night. "
        "*diff*: the night completes and its unit changes are derived again (what `diff_step` does "
        "after its quarantine check); *release*: `release_snapshot` of a quarantined night; *press*: "
        "`record_reading`, the database part of a Get Units Now press. Median of five each, after the fill has settled (VACUUM ANALYZE and a checkpoint); "
        "each engine in its own process.",
        "",
        f"| engine | step | night 2 | night {first['days']} | ratio |",
        "|---|---|---:|---:|---:|",
        *rows,
        "",
        f"Target: night {first['days']} ≤ {MAX_GROWTH} × night 2 for each. Target met: **{'yes' if met else 'no'}**.",
    ])


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
    plus one press per ~50 services a week (streamed: every service's history is re-drawn)."""
    from agent_billing.sync.changes import change_id
    from agent_billing.warehouse.bulk import bulk_insert

    days = range(first_day, last_day + 1)

    def counts():
        for n in range(SERVICES):
            daily = _history(n)[1]
            for d in days:
                if d < len(daily):
                    yield (f"S{n:05}", FIRST + timedelta(days=d), daily[d])

    def changes():
        for n in range(SERVICES):
            daily = _history(n)[1]
            for d in days:
                if 0 < d < len(daily) and daily[d] != daily[d - 1]:
                    day = FIRST + timedelta(days=d)
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
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
            conn.execute(text("CHECKPOINT"))
    else:
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def _measure(engine, settings, night: date) -> dict[str, float]:
    """Diff, release and press of ``night`` (its counts are loaded; the run is not yet complete)."""
    _settle(engine)
    from agent_billing.sync import changes
    from agent_billing.sync.pipeline import release_snapshot
    from agent_billing.sync.runs import record_run

    def diff() -> float:
        started = time.perf_counter()
        with engine.begin() as conn:
            changes.lock_unit_history(conn)
            record_run(conn, night, "complete", observed_at=observed(night), message=None)
            changes.rederive_from(conn, night, settings.tz)
        return time.perf_counter() - started

    def release() -> float:
        with engine.begin() as conn:  # untimed: the night is held
            record_run(conn, night, "quarantined", message="benchmark")
            changes.rederive_from(conn, night, settings.tz)
        started = time.perf_counter()
        release_snapshot(engine, settings, night)
        return time.perf_counter() - started

    presses = iter(range(10, 60))

    def press() -> float:
        minute = next(presses)
        at = datetime.combine(night, clock(15, minute), tzinfo=UTC)
        started = time.perf_counter()
        with engine.begin() as conn:
            changes.record_reading(conn, settings.tz, "S00001", at, 1000 + minute)
        return time.perf_counter() - started

    found = {}
    for name, step in (("diff", diff), ("release", release), ("press", press)):
        found[name] = statistics.median(step() for _ in range(5))
    return found


def _child(kind: str) -> None:
    from agent_billing.settings import Settings
    from agent_billing.warehouse import connect_warehouse, upgrade
    from agent_billing.warehouse.bulk import bulk_insert

    work = Path(tempfile.mkdtemp(prefix="bench_history_"))
    settings = Settings(raw_path=work / "raw")
    admin = None
    if kind == "postgresql":
        admin = connect_warehouse(ADMIN_URL, isolation_level="AUTOCOMMIT")
        name = f"ab_bench_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{work / 'warehouse.db'}"
    try:
        engine = connect_warehouse(url)
        upgrade(engine)
        contracts = SERVICES // PER_CONTRACT
        ends = [_history(n)[0] for n in range(SERVICES)]
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
        _fill_counts_only(engine, 1)
        early = _measure(engine, settings, FIRST + timedelta(days=1))
        sizes = _fill(engine, 2, DAYS - 2)
        _fill_counts_only(engine, DAYS - 1)
        late = _measure(engine, settings, FIRST + timedelta(days=DAYS - 1))
        engine.dispose()
    finally:
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        subprocess.run(["rm", "-rf", str(work)], check=False)
    print(json.dumps({
        "engine": kind, "services": SERVICES, "days": DAYS, "ended": sum(e is not None for e in ends),
        **sizes, **{f"{k}_day2": v for k, v in early.items()}, **{f"{k}_last": v for k, v in late.items()},
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
