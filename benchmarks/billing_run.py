"""Benchmark: a year of billing for 20,000 and 40,000 agent-counted services on PostgreSQL.

Each size runs in its own process on a scratch database (created on the test server, dropped
after): a few hundred contracts (70 services each), a year of daily ``service_unit_counts``
(COPY), a unit change every ~2 weeks per service. Timed: the twelve monthly runs of the year
(each posts every contract's invoice: normal lines plus the month's prorations), one nightly
run on the second night (as of 2 January, after January's invoice, on a copy of the database
kept at that night), one on 15 January, the night after December's invoice (2 December) and
one at year end (15 December, timed in turn with the second night, then alone once that copy is
dropped: the growth between sizes compares the runs alone)
(nothing to post), each after its night's unit changes were written again as a sync's diff
writes them; and one after a backfill of a March night (its changes written again).
Targets: doubling the services at most 2.3 × the time; the nightly run at 20,000 services
within 5 s, and at year end at most 1.2 × the second night's. Each timed night runs
``REPEATS`` times and reports the median (``BENCH_BILLING_REPEATS``).

``python -m benchmarks.billing_run SERVICES`` is one size (prints one JSON line, naming the
warehouse it keeps); ``python -m benchmarks.billing_run growth SMALL LARGE`` times the night of
``GROWTH_NIGHT`` on both kept warehouses in turn, for the growth between sizes. ``run()`` drives
both sizes (``BENCH_BILLING_SERVICES``, default 20000,40000), then the growth, drops the
warehouses and returns the report section.
"""

from __future__ import annotations

import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import text
from sqlalchemy.engine import make_url

from benchmarks import PG_ADMIN_URL, settle_postgres

# the two sizes compared (the second twice the first); BENCH_BILLING_SERVICES=140,280 for a quick run
SIZES = tuple(int(n) for n in os.environ.get("BENCH_BILLING_SERVICES", "20000,40000").split(","))
SERVICES_PER_CONTRACT = 70
YEAR = [date(2024, 1, 1) + timedelta(days=n) for n in range(366)]  # 2024 is a leap year
MONTHS = [date(2024, m, 1) for m in range(1, 13)]
NIGHTLY = date(2024, 12, 15)
EARLY_NIGHTLY = date(2024, 1, 2)  # the second night of the history: one invoice posted, two days of counts
# The night of the first month at year end's place in its month: a month's changes wait pending
# for the next invoice, so a night's lines grow through each month whatever the history.
EARLY_SAME_DAY = date(2024, 1, 15)
BACKFILLED = date(2024, 3, 14)  # a night backfilled after the year end: its month is walked again
GROWTH_NIGHT = date(2024, 12, 17)  # the night after the backfill's run (as of 12-16), timed at both sizes in turn
MAX_GROWTH = 2.3
MAX_HISTORY_GROWTH = 1.2  # the year-end night against the second night (issue 10)
NIGHTLY_TARGET = 5.0  # seconds, the nightly run at 20,000 services (issue 10)
# Each timed night runs this many times (its changes written again before each); the median is
# reported: a 3-second run on a shared 2-core machine moves by a third from one run to the next.
REPEATS = int(os.environ.get("BENCH_BILLING_REPEATS", "3"))
ROOT = Path(__file__).resolve().parents[1]


def run() -> str:
    results = []
    try:
        for services in SIZES:  # each size's year in its own process; its warehouse is kept
            results.append(_run_child(str(services)))
        # The growth between sizes: their year-end nights alternated in one process, so that a
        # change in the machine's speed falls on both (timed minutes apart in two processes,
        # the ratio moved between 1.5 and 2.6 with the same code and data).
        growth = _run_child("growth", *(r["database"] for r in results))
    finally:
        _drop(*(r["database"] for r in results))
    return _report(results, growth)


def _run_child(*args: str) -> dict:
    child = subprocess.run(
        [sys.executable, "-m", "benchmarks.billing_run", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=3600, check=False,
    )
    if child.returncode != 0:
        raise RuntimeError(f"the billing benchmark failed:\n{child.stderr[-3000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def _drop(*databases: str) -> None:
    from agent_billing.warehouse import connect_warehouse

    admin = connect_warehouse(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for database in databases:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    admin.dispose()


def _growth_child(small: str, large: str) -> None:
    """The night of ``GROWTH_NIGHT`` on both sizes' warehouses, in turn, ``REPEATS`` times."""
    from agent_billing.warehouse import connect_warehouse

    engines = [connect_warehouse(make_url(PG_ADMIN_URL).set(database=d).render_as_string(hide_password=False))
               for d in (small, large)]
    runs: list[list[tuple[float, float]]] = [[], []]
    for _ in range(REPEATS):
        for engine, timed in zip(engines, runs, strict=True):
            timed.append(_timed(engine, GROWTH_NIGHT))
    for engine in engines:
        engine.dispose()
    print(json.dumps({**_Night.median(runs[0]).figures("small"), **_Night.median(runs[1]).figures("large")}))


def _report(results: list[dict], growth: dict) -> str:
    small, large = results
    monthly = large["monthly_seconds"] / small["monthly_seconds"]
    nightly = growth["large_seconds"] / growth["small_seconds"]
    history = small["nightly_seconds"] / small["early_nightly_seconds"]
    same_day = small["nightly_seconds"] / small["same_day_seconds"]
    after_invoice = small["late_after_invoice_seconds"] / small["early_nightly_seconds"]
    history_cpu = small["nightly_cpu_seconds"] / small["early_nightly_cpu_seconds"]
    met = (monthly <= MAX_GROWTH and nightly <= MAX_GROWTH and small["nightly_alone_seconds"] <= NIGHTLY_TARGET
           and history <= MAX_HISTORY_GROWTH)
    rows = [
        f"| {r['services']:,} | {r['contracts']:,} | {r['changes']:,} | {r['counts']:,} "
        f"| {r['lines']:,} | {r['monthly_seconds']:.1f} s ({r['monthly_cpu_seconds']:.1f} s) "
        f"| {r['slowest_month_seconds']:.1f} s "
        f"| {r['early_nightly_seconds']:.2f} s ({r['early_nightly_cpu_seconds']:.2f} s) | {r['same_day_seconds']:.2f} s "
        f"| {r['late_after_invoice_seconds']:.2f} s "
        f"| {r['nightly_seconds']:.2f} s ({r['nightly_cpu_seconds']:.2f} s) "
        f"| {r['nightly_alone_seconds']:.2f} s ({r['nightly_alone_cpu_seconds']:.2f} s) "
        f"| {r['backfill_seconds']:.2f} s "
        f"| {' / '.join(f'{x:.1f}' for x in r['nightly_load'])} "
        f"| {r['peak_rss_mb']:.0f} MB ({r['base_rss_mb']:.0f} MB) | {r['generate_seconds']:.0f} s |"
        for r in results
    ]
    return "\n".join([
        "## Billing run",
        "",
        "`run_billing` on PostgreSQL over a year of history (2024): services counted by RMM"
        f" agents, {SERVICES_PER_CONTRACT} per contract, one daily count each (COPY-loaded) and"
        " a unit change every ~2 weeks. *Year* = the twelve runs as of each month's 1st (each"
        f" posts every contract's invoice); *nightly* = one run as of {NIGHTLY} (nothing to"
        f" post; refreshes `billing_review`), after the run of the night before, as every night runs"
        f" in production; one as of {EARLY_NIGHTLY}, the second night (after January's run), and"
        f" one as of {EARLY_SAME_DAY}, after the night before's; each after the unit changes"
        " effective that day were written again, as that night's sync writes them before its"
        " billing run (a night's run computes only the lines of the services whose changes are"
        " new, `billing.settled`); *backfill* = a"
        f" run after the changes of {BACKFILLED} were written again (a backfilled night: its"
        " month and every later one are walked again). Each nightly figure is the median of"
        f" {REPEATS} runs of that night (its changes written again before each); the runs as of"
        f" {EARLY_NIGHTLY} and {NIGHTLY} alternate, each on its own copy of the database (the"
        " first holds January's invoice only), so that a change in the machine's speed falls on"
        f" both; *alone* = the run as of {NIGHTLY} again, {REPEATS} times, after that copy was"
        " dropped, as production holds one warehouse. Each size runs in"
        " its own process. Each timed run starts settled (VACUUM ANALYZE and a checkpoint just before"
        " it: the benchmark writes a year in minutes). Wall time, with the billing process's own CPU time in brackets"
        " (PostgreSQL's is not in it; on PostgreSQL two contracts are billed at a time,"
        " `billing.run.WORKERS`), and the machine's load average (1 / 5 / 15 min) when the"
        " nightly run started: the machine is shared, compare figures measured under like load.",
        "",
        "| services | contracts | unit changes | daily counts | lines posted | year (12 runs)"
        f" | slowest run | nightly run as of {EARLY_NIGHTLY} | as of {EARLY_SAME_DAY}"
        f" | as of {MONTHS[-1] + timedelta(days=1)} | as of {NIGHTLY} | as of {NIGHTLY}, alone"
        f" | backfill of {BACKFILLED} | load at nightly | peak RSS (before billing) | data generation |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Growth for 2 × the services: year {monthly:.2f} ×, nightly {nightly:.2f} ×"
        f" (target ≤ {MAX_GROWTH} ×; the nightly runs as of {GROWTH_NIGHT} at both sizes, after the"
        f" backfill's run, in turn in one process, median of {REPEATS} each:"
        f" {growth['small_seconds']:.2f} s and {growth['large_seconds']:.2f} s, CPU"
        f" {growth['small_cpu_seconds']:.2f} s and {growth['large_cpu_seconds']:.2f} s)."
        f" Nightly run at {small['services']:,} services:"
        f" {small['nightly_alone_seconds']:.1f} s alone, {small['nightly_seconds']:.1f} s in turn with"
        f" the second night (target ≤ {NIGHTLY_TARGET:.0f} s).",
        "",
        f"History: at {small['services']:,} services the run as of {NIGHTLY} takes {history:.2f} ×"
        f" the run as of {EARLY_NIGHTLY} (the second night, one invoice posted; target ≤"
        f" {MAX_HISTORY_GROWTH} ×; its own CPU time {history_cpu:.2f} ×);"
        f" {same_day:.2f} × the run as of {EARLY_SAME_DAY}, the same"
        " day of its month: a month's unit changes wait pending for the next invoice, so a"
        " night's lines grow through each month whatever the history. The night after"
        f" December's invoice takes {after_invoice:.2f} × the night after January's. A run walks only the months its contract's last run left"
        " unsettled and the months of unit changes written since (`billing.settled`); the"
        f" backfill of {BACKFILLED} ({small['backfilled_changes']:,} changes written again) walks"
        f" from March: {small['backfill_seconds']:.2f} s.",
        "",
        f"Review: after the nightly run as of {YEAR[-1]}, what `agent-billing review` computes for every"
        " contract (its pending lines, and the checks beside them: lines out of date, an invoice due,"
        " lines a run would give a contract that has none) takes "
        + "; ".join(f"{r['review_seconds']:.1f} s at {r['services']:,} services ({r['review_pending']:,} pending"
                    f" lines, {r['review_notes']:,} notes)" for r in results) + ".",
        "",
        f"target met: {'yes' if met else 'no'}",
    ])


def _child(services: int) -> None:
    from agent_billing.billing import run_billing
    from agent_billing.warehouse import connect_warehouse, upgrade

    admin = connect_warehouse(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"ab_bench_{uuid.uuid4().hex[:10]}"
    second_night = f"{name}_n2"  # a copy that stays on the second night, timed beside the year end
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        engine = connect_warehouse(
            make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        )
        upgrade(engine)
        started = time.perf_counter()
        sizes = _generate(engine, services)
        generate_seconds = time.perf_counter() - started
        engine.dispose()  # a template has no other session
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{second_night}" TEMPLATE "{name}"'))
        early_engine = connect_warehouse(
            make_url(PG_ADMIN_URL).set(database=second_night).render_as_string(hide_password=False)
        )
        base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        run_billing(early_engine, MONTHS[0])  # January's invoice: the state of the second night
        monthly, monthly_cpu = [], 0.0
        for month in MONTHS:
            started, cpu = time.perf_counter(), time.process_time()
            run_billing(engine, month)
            monthly.append(time.perf_counter() - started)
            monthly_cpu += time.process_time() - cpu
            if month == MONTHS[0]:  # mid-month, before the year piles up
                run_billing(engine, EARLY_SAME_DAY - timedelta(days=1))  # every night runs
                same_day = _night(engine, EARLY_SAME_DAY)
            if month == MONTHS[-1]:  # the night after December's invoice, as on 2 January
                late_after_invoice = _night(engine, month + timedelta(days=1))
        run_billing(engine, NIGHTLY - timedelta(days=1))  # every night runs in production
        nightly_load = os.getloadavg()
        # The second night and the year end alternate, each on its own database, so that a change
        # in the machine's speed while they run falls on both (one after the other, a shared
        # machine moved their ratio between 0.9 and 1.5 with the same code and data).
        early_runs, late_runs = [], []
        for _ in range(REPEATS):
            early_runs.append(_timed(early_engine, EARLY_NIGHTLY))
            late_runs.append(_timed(engine, NIGHTLY))
        early, nightly = _Night.median(early_runs), _Night.median(late_runs)
        early_engine.dispose()
        with admin.connect() as conn:  # production holds one warehouse: the year end alone
            conn.execute(text(f'DROP DATABASE "{second_night}" WITH (FORCE)'))
        # The growth pair compares this figure between sizes: one warehouse, as in production.
        alone = _night(engine, NIGHTLY)
        backfilled_changes = _rewrite_night(engine, BACKFILLED)
        settle_postgres(engine)
        started = time.perf_counter()
        run_billing(engine, NIGHTLY + timedelta(days=1))
        backfill_seconds = time.perf_counter() - started
        review_seconds, pending_count, review_notes = _review(engine, YEAR[-1])
        with engine.connect() as conn:
            lines = conn.execute(text("SELECT COUNT(*) FROM invoice_lines")).scalar_one()
        engine.dispose()
    except BaseException:
        _drop(name)
        raise
    finally:
        _drop(second_night)
        admin.dispose()
    print(json.dumps({
        "services": services, "database": name, **sizes, "lines": lines, "generate_seconds": generate_seconds,
        "monthly_seconds": sum(monthly), "slowest_month_seconds": max(monthly),
        "monthly_cpu_seconds": monthly_cpu, "nightly_load": nightly_load, "base_rss_mb": base_rss,
        **nightly.figures("nightly"), **alone.figures("nightly_alone"), **early.figures("early_nightly"), **same_day.figures("same_day"),
        **late_after_invoice.figures("late_after_invoice"),
        "backfill_seconds": backfill_seconds,
        "review_seconds": review_seconds, "review_pending": pending_count, "review_notes": review_notes,
        "backfilled_changes": backfilled_changes,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def _review(engine, as_of: date) -> tuple[float, int, int]:
    """What `agent-billing review` computes for every contract (the pending lines and the checks
    beside them: out of date, due, lines a run would give a contract with none), after the
    nightly run as of ``as_of``, the horizon: seconds, pending lines, notes."""
    from agent_billing.billing import pending_lines, run_billing
    from agent_billing.billing.review import review_notes

    run_billing(engine, as_of)
    settle_postgres(engine)
    started = time.perf_counter()
    pending = pending_lines(engine)
    notes = review_notes(engine, pending)
    return time.perf_counter() - started, len(pending), len(notes)


class _Night(NamedTuple):
    seconds: float  # the median of the repeats, wall time
    cpu_seconds: float  # the billing process's own CPU time, median

    @classmethod
    def median(cls, runs: list[tuple[float, float]]) -> _Night:
        return cls(statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))

    def figures(self, name: str) -> dict:
        return {f"{name}_seconds": self.seconds, f"{name}_cpu_seconds": self.cpu_seconds}


def _timed(engine, day: date) -> tuple[float, float]:
    """One nightly run as of ``day`` (wall and CPU seconds), after the night's unit changes were
    written again and the database settled; nothing is posted (a night, not an invoice day)."""
    from agent_billing.billing import run_billing

    _rewrite_night(engine, day)
    settle_postgres(engine)
    started, cpu = time.perf_counter(), time.process_time()
    assert run_billing(engine, day).invoices_posted == 0
    return time.perf_counter() - started, time.process_time() - cpu


def _night(engine, day: date) -> _Night:
    """The median of ``REPEATS`` runs of the night as of ``day`` (``_timed``)."""
    return _Night.median([_timed(engine, day) for _ in range(REPEATS)])


def _rewrite_night(engine, day: date) -> int:
    """Write the unit changes effective on ``day`` again, as a sync's diff (or a backfill of that
    night) does: each write marks its month stale for billing (``billing_stale``)."""
    with engine.begin() as conn:
        return conn.execute(
            text("UPDATE unit_changes SET detected_at = detected_at WHERE effective_date = :d"), {"d": day}
        ).rowcount


def _generate(engine, services: int) -> dict:
    """Contracts, services, daily counts and unit changes, streamed into COPY (each service's
    history is drawn from its own seed, so each pass regenerates it instead of keeping it)."""
    from agent_billing.warehouse.bulk import bulk_insert

    contracts = services // SERVICES_PER_CONTRACT
    counts = changes = 0
    with engine.begin() as conn:
        bulk_insert(conn, "accounts", ("account_id", "name", "vsa_org_id"),
                    ((f"A{c:05}", f"Account {c}", str(10**20 + c)) for c in range(contracts)))
        bulk_insert(conn, "contracts", ("contract_id", "account_id", "currency", "billing_day",
                                        "start_date"),
                    ((f"C{c:05}", f"A{c:05}", "USD", 1, YEAR[0]) for c in range(contracts)))
        bulk_insert(conn, "services", ("service_id", "contract_id", "name", "unit_price",
                                       "units_source", "vsa_machine_group_id", "start_date",
                                       "end_date"),
                    ((f"S{n:06}", f"C{n % contracts:05}", f"Agents {n}", s.price,
                      "rmm_agent_count", str(10**20 + n), s.start, s.end)
                     for n, s in enumerate(map(_service, range(services)))))
        bulk_insert(conn, "sync_runs", ("snapshot_date", "status"),
                    ((day, "complete") for day in YEAR))
        raw = conn.connection.driver_connection
        with raw.cursor() as cursor:
            with cursor.copy("COPY service_unit_counts (service_id, snapshot_date, units) FROM STDIN") as copy:
                for n in range(services):
                    history = _service(n).history
                    copy.write("".join(f"S{n:06}\t{day}\t{units}\n" for day, units in history))
                    counts += len(history)
            with cursor.copy("COPY unit_changes (change_id, service_id, effective_date, units_before,"
                             " units_after, delta, source) FROM STDIN") as copy:
                for n in range(services):
                    history = _service(n).history
                    for (_, before), (day, after) in zip(history, history[1:], strict=False):
                        if after != before:
                            copy.write_row((f"S{n:06}:{day}:nightly_sync", f"S{n:06}", day, before,
                                            after, after - before, "nightly_sync"))
                            changes += 1
        conn.execute(text("ANALYZE accounts, contracts, services, service_unit_counts, unit_changes"))
    return {"contracts": contracts, "counts": counts, "changes": changes}


class _Service(NamedTuple):
    price: str
    start: date
    end: date | None
    history: list[tuple[date, int]]  # daily units while active; a change every ~2 weeks


def _service(n: int) -> _Service:
    rng = random.Random(n)
    price = rng.choice(("9.5000", "12.0000", "15.2500", "40.0000"))
    start = YEAR[0] if rng.random() < 0.95 else rng.choice(YEAR[30:300])
    end = rng.choice([d for d in YEAR if d > start]) if rng.random() < 0.03 else None
    units, history = rng.randint(1, 60), []
    for day in YEAR:
        if start <= day and (end is None or day <= end):
            if rng.random() < 1 / 14:
                units = max(0, units + rng.choice((-3, -2, -1, 1, 1, 2, 3)))
            history.append((day, units))
    return _Service(price, start, end, history)


if __name__ == "__main__":
    if sys.argv[1] == "growth":
        _growth_child(*sys.argv[2:4])
    else:
        _child(int(sys.argv[1]))
