"""Properties of the engine over generated unit histories (SQLite; a fresh warehouse each)."""

from __future__ import annotations

import itertools
import shutil
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from agent_billing.billing import run_billing
from agent_billing.billing.calendar import days_in_month, month_end
from agent_billing.billing.store import typed_select
from agent_billing.contracts import apply_contracts
from agent_billing.warehouse import connect_warehouse, upgrade

PROPERTY_SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
SOURCES = ("nightly_sync", "get_units_now", "manual")
HORIZON = date(2025, 12, 31)  # every billing date drawn here is on or before it


@pytest.fixture(scope="module")
def fresh_warehouse(tmp_path_factory):
    """A factory of fresh migrated SQLite warehouses (copies of one migrated template)."""
    root = tmp_path_factory.mktemp("property_warehouses")
    template = root / "template.db"
    engine = connect_warehouse(f"sqlite:///{template}")
    upgrade(engine)
    engine.dispose()
    counter = itertools.count()

    def make():
        path = root / f"w{next(counter)}.db"
        shutil.copy(template, path)
        return connect_warehouse(f"sqlite:///{path}")

    return make


def setup(engine, price: Decimal, start: date, services: dict, billing_day: int = 1) -> None:
    """``services``: service id -> (start date, starting units, [(day, source, before, after)])."""
    apply_contracts(engine, {"accounts": [{
        "account_id": "A", "name": "A", "vsa_org_id": "1",
        "contracts": [{
            "contract_id": "C", "currency": "USD", "start_date": start, "billing_day": billing_day,
            "services": [
                {"service_id": sid, "name": sid, "unit_price": str(price),
                 "units_source": "rmm_agent_count", "start_date": s_start}
                for sid, (s_start, _, _) in services.items()
            ],
        }],
    }]})
    with engine.begin() as conn:
        for day in sorted({s_start for s_start, _, _ in services.values()}):
            conn.execute(text("INSERT INTO sync_runs (snapshot_date, status) VALUES (:d, 'complete')"),
                         {"d": day})
        # The nightly sync concluded up to the last billing date drawn (the billing horizon).
        conn.execute(text("INSERT INTO sync_runs (snapshot_date, status) VALUES (:d, 'gap')"),
                     {"d": HORIZON})
        for sid, (s_start, units, changes) in services.items():
            conn.execute(text("INSERT INTO service_unit_counts VALUES (:s, :d, :u)"),
                         {"s": sid, "d": s_start, "u": units})
            insert_changes(conn, sid, changes)


def insert_changes(conn, service_id: str, changes) -> None:
    """Changes observed in list order: same-day changes apply in the order they were detected
    (``timeline.ordered``), so each gets a later ``detected_at`` than the one before it."""
    for n, (day, source, before, after) in enumerate(changes):
        conn.execute(
            text("INSERT INTO unit_changes (change_id, service_id, effective_date, units_before, "
                 "units_after, delta, source, detected_at) VALUES (:c, :s, :d, :b, :a, :delta, :src, :at)"),
            {"c": f"{service_id}:{day}:{source}", "s": service_id, "d": day, "b": before,
             "a": after, "delta": after - before, "src": source,
             "at": f"{day} {n // 60:02d}:{n % 60:02d}:00"},
        )


def rows(engine, sql: str) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(typed_select(text(sql))).mappings()]


prices = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("999.9999"), places=4)
months = st.sampled_from([date(2024, 2, 1), date(2025, 2, 1), date(2025, 4, 1), date(2025, 7, 1)])


@st.composite
def month_histories(draw):
    """A month, a starting count and unit changes inside it (several sources on one day)."""
    month = draw(months)
    start_units = units = draw(st.integers(0, 40))
    slots = draw(st.lists(
        st.tuples(st.integers(1, days_in_month(month)), st.sampled_from(SOURCES)),
        unique=True, max_size=6,
    ))
    changes = []
    for day, source in sorted(slots, key=lambda s: (s[0], SOURCES.index(s[1]))):
        after = draw(st.integers(0, 40).filter(lambda u, before=units: u != before))
        changes.append((month.replace(day=day), source, units, after))
        units = after
    return month, start_units, changes


@PROPERTY_SETTINGS
@given(history=month_histories(), price=prices, known_before_invoice=st.booleans())
def test_a_month_bills_its_exact_unit_days(fresh_warehouse, history, price, known_before_invoice):
    month, start_units, changes = history
    engine = fresh_warehouse()
    setup(engine, price, month, {"S": (month, start_units, [] if not known_before_invoice else changes)})
    run_billing(engine, month)
    if not known_before_invoice:  # the month was invoiced before its changes were known
        with engine.begin() as conn:
            insert_changes(conn, "S", changes)
    next_month = month_end(month) + timedelta(days=1)
    run_billing(engine, next_month)

    ledger = rows(engine, "SELECT * FROM invoice_lines")
    lines = [x for x in ledger if x["period_start"] < next_month]
    units_by_day = []
    for offset in range(days_in_month(month)):
        day = month + timedelta(days=offset)
        effective = [after for (d, _, _, after) in changes if d <= day]
        units_by_day.append(effective[-1] if effective else start_units)
    exact = Fraction(sum(units_by_day)) * Fraction(price) / days_in_month(month)
    billed = sum((x["amount"] for x in lines), Decimal(0))
    assert abs(Fraction(billed) - exact) <= Fraction(1, 200) * len(lines)

    for as_of in (month, next_month):  # re-running posts nothing
        again = run_billing(engine, as_of)
        assert (again.invoices_posted, again.pending_lines) == (0, 0)
    assert rows(engine, "SELECT * FROM invoice_lines") == ledger
    engine.dispose()


@st.composite
def histories(draw):
    """Two services over Jan-Apr 2024 (one starts mid-way) and a set of billing dates."""
    services = {}
    for sid, start in (("S1", date(2024, 1, 1)), ("S2", draw(st.dates(date(2024, 1, 2), date(2024, 3, 20))))):
        units = draw(st.integers(0, 30))
        days = draw(st.lists(st.dates(start + timedelta(days=1), date(2024, 4, 30)), unique=True, max_size=5))
        changes, current = [], units
        for day in sorted(days):
            after = draw(st.integers(0, 30).filter(lambda u, before=current: u != before))
            changes.append((day, "nightly_sync", current, after))
            current = after
        services[sid] = (start, units, changes)
    as_of = draw(st.lists(st.dates(date(2024, 1, 1), date(2024, 5, 20)), min_size=2, max_size=5, unique=True))
    return services, draw(st.integers(1, 28)), as_of, draw(st.permutations(as_of))


def billed_per_service_month(engine) -> dict:
    """Net amount of posted and pending lines per (service, month covered)."""
    lines = rows(engine, "SELECT * FROM invoice_lines") + rows(engine, "SELECT * FROM billing_pending")
    month_of = {x["line_id"]: x["period_start"].replace(day=1) for x in lines if x["kind"] != "adjustment"}
    net = defaultdict(Decimal)
    for x in lines:
        month = month_of[x["adjusts_line_id"]] if x["kind"] == "adjustment" else month_of[x["line_id"]]
        net[x["service_id"], month] += x["amount"]
    return {k: v for k, v in net.items() if v}


@PROPERTY_SETTINGS
@given(history=histories(), price=prices)
def test_any_order_of_dates_converges_to_the_same_ledger(fresh_warehouse, history, price):
    services, billing_day, as_of, shuffled = history
    results = []
    for order in (sorted(as_of), shuffled):
        engine = fresh_warehouse()
        setup(engine, price, date(2024, 1, 1), services, billing_day)
        for day in order:
            run_billing(engine, day)
        posted_and_pending = billed_per_service_month(engine)
        run_billing(engine, date(2024, 6, 28))  # a later run flushes what waits
        results.append((posted_and_pending, billed_per_service_month(engine)))
        engine.dispose()
    assert results[0] == results[1]


def exact_per_service_month(services: dict, price: Decimal, until: date) -> dict:
    """Unit-days x price / days in month, per (service, month), from the stored history."""
    exact = defaultdict(Fraction)
    for sid, (start, units, changes) in services.items():
        day = start
        while day <= until:
            effective = [after for (d, _, _, after) in changes if d <= day]
            exact[sid, day.replace(day=1)] += Fraction((effective[-1] if effective else units)
                                                       * price) / days_in_month(day)
            day += timedelta(days=1)
    return {k: v for k, v in exact.items() if v}


@PROPERTY_SETTINGS
@given(before=histories(), after=histories(), price=prices, data=st.data())
def test_rewritten_history_converges_to_the_exact_amounts(fresh_warehouse, before, after, price, data):
    """Runs on one history, then a backfill rewrites it (changes altered, removed, added late),
    more runs; after a final run every month is billed its exact unit-days, up to rounding."""
    services, billing_day, first_runs, _ = before
    rewritten = {sid: (services[sid][0], services[sid][1], after[0][sid][2]) for sid in services}
    rewritten = {  # the sync re-derives a consistent chain from the (unchanged) first count
        sid: (start, units, _rechain(units, changes)) for sid, (start, units, changes) in rewritten.items()
    }
    engine = fresh_warehouse()
    setup(engine, price, date(2024, 1, 1), services, billing_day)
    for day in first_runs:
        run_billing(engine, day)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM unit_changes"))
        for sid, (_, _, changes) in rewritten.items():
            insert_changes(conn, sid, changes)
    for day in data.draw(st.lists(st.dates(date(2024, 1, 1), date(2024, 6, 20)), max_size=3)):
        run_billing(engine, day)
    run_billing(engine, date(2024, 6, 28))

    lines = rows(engine, "SELECT * FROM invoice_lines")
    billed = billed_per_service_month(engine)
    base_lines = defaultdict(int)
    for x in lines:
        if x["kind"] != "adjustment":
            base_lines[x["service_id"], x["period_start"].replace(day=1)] += 1
    exact = exact_per_service_month(rewritten, price, date(2024, 6, 30))
    for key in billed.keys() | exact.keys():
        assert abs(Fraction(billed.get(key, 0)) - exact.get(key, 0)) <= Fraction(base_lines[key], 200), key
    assert rows(engine, "SELECT * FROM billing_pending") == []
    engine.dispose()


def _rechain(units: int, changes: list) -> list:
    out = []
    for day, source, _, after in changes:
        if after != units:
            out.append((day, source, units, after))
            units = after
    return out
