"""A service's starting units come from its first count of a good (complete) snapshot."""

from __future__ import annotations

from decimal import Decimal


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
