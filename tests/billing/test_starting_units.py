"""A service's starting units: its first observation (a count of a good, complete, snapshot or a
Get Units Now reading) on or before the run's date."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import text
from tests.billing.conftest import Books


def test_counts_of_snapshots_that_are_not_complete_do_not_set_the_starting_units(books):
    books.contract("C1", [books.rmm("S1", "10.00", "2025-05-01")], start="2025-05-01")
    for day, status, units in (("2025-05-01", "quarantined", 50), ("2025-05-02", "failed", 40)):
        books.concluded(day, status)
        books._exec(
            "INSERT INTO service_unit_counts (service_id, snapshot_date, units) VALUES (:s, :d, :u)",
            s="S1", d=books.d(day), u=units,
        )
    books.count("S1", "2025-05-03", 7)
    books.count("S1", "2025-05-04", 9)
    books.bill("2025-06-01")
    lines = books.invoice("INV-C1-2025-06")["lines"]  # May and June, 7 units each
    assert [(x["kind"], x["units"], x["amount"]) for x in lines] == [
        ("normal", 7, Decimal("70.00")), ("normal", 7, Decimal("70.00"))]


# A service started on a night that did not count it (discarded, or a gap) and first observed
# on the next day, by that night's count or by a Get Units Now press (the night a gap too). Billed
# night by night, the run as of May 1st (May's invoice date) knows no observation and posts
# nothing for it; when the nights were synced ahead of billing (coalesced asset events, a
# backfill, a restore's replay) that run must post the same, not May at a later observation.
FIRST_SEEN = {  # (day, status, S1's count, a press's units that day)
    "count": (("2025-05-01", "discarded", None, None), ("2025-05-02", "complete", 7, None),
              ("2025-05-03", "complete", 9, None), ("2025-06-01", "complete", 9, None)),
    "press": (("2025-05-01", "gap", None, None), ("2025-05-02", "gap", None, 7),
              ("2025-05-03", "complete", 9, None), ("2025-06-01", "complete", 9, None)),
}
BILLING_TABLES = ("invoices", "invoice_lines", "billing_cycles", "billing_review")


def _day(books, day: str, status: str, units: int | None, pressed: int | None, before: int | None) -> None:
    """``day`` as the sync and a press leave it for S1: its count or reading, its change from
    the observation before, and ``services.units`` (the latest observation)."""
    books.concluded(day, status)
    if pressed is not None:
        books._exec("INSERT INTO units_now_readings (service_id, observed_at, observed_date, units) "
                    "VALUES ('S1', :at, :d, :u)", at=f"{day} 10:00:00+00:00", d=books.d(day), u=pressed)
    if units is not None:
        books.count("S1", day, units)
        if before is not None and before != units:
            books.change("S1", day, before, units)
    if (latest := units if units is not None else pressed) is not None:
        books._exec("UPDATE services SET units = :u WHERE service_id = 'S1'", u=latest)


def _billed(engine) -> dict[str, list[tuple]]:
    """What billing wrote, without its timestamps."""
    with engine.connect() as conn:
        out = {}
        for table in BILLING_TABLES:
            rows = conn.execute(text(f"SELECT * FROM {table}")).mappings()
            out[table] = sorted(
                (tuple((k, str(v)) for k, v in row.items() if not k.endswith("_at")) for row in rows), key=repr)
        return out


def _steps(days, order: str):
    """("day", args) and ("bill", date) steps: each day then its billing, or (synced ahead)
    May's days first, then May's billing runs, then June's day and its run."""
    before, synced = None, []
    for day, status, units, pressed in days:
        synced.append(("day", (day, status, units, pressed, before)))
        before = next((u for u in (units, pressed) if u is not None), before)
    bills = [("bill", day[0]) for day in days]
    if order == "nightly":
        return [step for pair in zip(synced, bills, strict=True) for step in pair]
    return synced[:3] + bills[:3] + [synced[3], bills[3]]


@pytest.mark.parametrize("first_seen", FIRST_SEEN)
def test_a_run_bills_what_was_known_on_its_night_even_when_later_nights_were_synced(
    warehouse, second_warehouse, first_seen
):
    results = {}
    for order, engine in (("nightly", warehouse), ("synced ahead", second_warehouse)):
        books = Books(engine)
        books.contract("C1", [books.rmm("S1", "10.00", "2025-05-01")], start="2025-05-01")
        for step, value in _steps(FIRST_SEEN[first_seen], order):
            _day(books, *value) if step == "day" else books.bill(value)
        results[order] = _billed(engine)
    assert results["synced ahead"] == results["nightly"]
    # On May 1st nothing was observed: no May invoice; June's carries May at its first observation.
    invoices = Books(warehouse).invoices()
    assert list(invoices) == ["INV-C1-2025-06"]
    assert [(x["kind"], str(x["period_start"]), x["units"], x["amount"]) for x in invoices["INV-C1-2025-06"]["lines"]] == [
        ("normal", "2025-05-01", 7, Decimal("70.00")), ("prorated", "2025-05-03", 2, Decimal("18.71")),
        ("normal", "2025-06-01", 9, Decimal("90.00"))]
