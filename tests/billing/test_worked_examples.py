"""SPEC §5 worked examples, each as the run sequence that produces it, to the cent."""

from __future__ import annotations

from decimal import Decimal

import pytest

# price, units, changes (effective, before, after), first month, next month,
# first invoice total, next invoice lines (kind, amount)
EXAMPLES = {
    "1: 10 -> 11 on Mar 15": (
        "12.00", 10, [("2024-03-15", 10, 11)], "2024-03", "2024-04", "120.00",
        [("normal", "132.00"), ("prorated", "6.58")],
    ),
    "2: 40 -> 37 on Feb 20 (leap year)": (
        "25.00", 40, [("2024-02-20", 40, 37)], "2024-02", "2024-03", "1000.00",
        [("normal", "925.00"), ("prorated", "-25.86")],
    ),
    "3: 20 -> 25 -> 23 in April": (
        "15.00", 20, [("2025-04-08", 20, 25), ("2025-04-22", 25, 23)], "2025-04", "2025-05",
        "300.00", [("normal", "345.00"), ("prorated", "57.50"), ("prorated", "-9.00")],
    ),
    "5: 3 -> 6, per-unit rounding would give 9.99": (
        "10.00", 3, [("2025-09-21", 3, 6)], "2025-09", "2025-10", "30.00",
        [("normal", "60.00"), ("prorated", "10.00")],
    ),
    "6: 0.565 rounds half-up to 0.57": (
        "1.13", 100, [("2025-11-16", 100, 101)], "2025-11", "2025-12", "113.00",
        [("normal", "114.13"), ("prorated", "0.57")],
    ),
}


@pytest.mark.parametrize("example", EXAMPLES)
def test_worked_example(books, example):
    price, units, changes, first, second, first_total, second_lines = EXAMPLES[example]
    books.contract("C", [books.rmm("S", price, f"{first}-01")], start=f"{first}-01")
    books.count("S", f"{first}-01", units)

    books.bill(f"{first}-01")
    first_invoice = books.invoice(f"INV-C-{first}")
    assert books.amounts(first_invoice["lines"]) == [("normal", Decimal(first_total))]
    assert first_invoice["total"] == Decimal(first_total)

    for effective, before, after in changes:
        books.change("S", effective, before, after)
        summary = books.bill(effective)  # the nightly run of the change: nothing is posted
        assert summary.invoices_posted == 0
    assert len(books.pending("C")) == len(changes)

    books.bill(f"{second}-01")
    second_invoice = books.invoice(f"INV-C-{second}")
    expected = sorted((kind, Decimal(amount)) for kind, amount in second_lines)
    assert books.amounts(second_invoice["lines"]) == expected
    assert second_invoice["total"] == sum(amount for _, amount in expected)
    assert second_invoice["document_type"] == "invoice"
    assert books.pending("C") == []


def test_example_4_late_change_to_an_invoiced_month(books):
    """January posted with 8 units; the change of Jan 31 is recorded after that."""
    books.contract("C", [books.rmm("S", "40.00", "2025-01-01")], start="2025-01-01")
    books.count("S", "2025-01-01", 8)
    books.bill("2025-01-01")
    assert books.invoice("INV-C-2025-01")["total"] == Decimal("320.00")

    change_id = books.change("S", "2025-01-31", 8, 9)
    books.bill("2025-02-01")

    february = books.invoice("INV-C-2025-02")
    assert books.amounts(february["lines"]) == [
        ("normal", Decimal("360.00")),
        ("prorated", Decimal("1.29")),
    ]
    [prorated] = [x for x in february["lines"] if x["kind"] == "prorated"]
    assert (prorated["period_start"], prorated["period_end"]) == (
        books.d("2025-01-31"), books.d("2025-01-31"))
    assert (prorated["days"], prorated["days_in_period"], prorated["units"]) == (1, 31, 1)
    assert prorated["change_id"] == change_id
    assert february["total"] == Decimal("361.29")


def test_a_line_of_one_unit_reads_one_unit(books):
    """The descriptions are read out in disputes: "1 unit", never "1 units"."""
    books.contract("C", [books.rmm("S", "10.00", "2024-03-01")], start="2024-03-01")
    books.count("S", "2024-03-01", 1)
    books.bill("2024-03-01")
    [march] = books.invoice("INV-C-2024-03")["lines"]
    assert march["description"].endswith(", 2024-03: 1 unit")
    books.change("S", "2024-03-21", 1, 2)
    books.bill("2024-03-21")
    books.bill("2024-04-01")
    books.change("S", "2024-04-11", 2, 1)
    books.bill("2024-04-11")
    books.bill("2024-05-01")
    said = {month: sorted(x["description"].split(": ", 1)[1] for x in books.invoice(f"INV-C-{month}")["lines"])
            for month in ("2024-04", "2024-05")}
    assert said == {"2024-04": ["1 -> 2 units from 2024-03-21, 11/31 days", "2 units"],
                    "2024-05": ["1 unit", "2 -> 1 unit from 2024-04-11, 20/30 days"]}
