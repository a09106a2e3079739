"""Exact money on both engines: the ``*_e4`` integer columns agree with the NUMERIC ones, and
the data dictionary's documented sum is exact on SQLite where ``SUM(amount)`` adds floats."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from pathlib import Path

from sqlalchemy import text

from agent_billing.billing import run_billing, store
from agent_billing.billing.model import Line

DICTIONARY = Path(__file__).resolve().parents[2] / "docs" / "data-dictionary.md"
MARKER = "-- exact sum of money per invoice month and currency"
CENTS = [Decimal(x) for x in ("0.10", "0.20", "0.07", "1.13", "-0.30", "12.01")]


def documented_exact_sum() -> str:
    blocks = re.findall(r"```sql\n(.*?)```", DICTIONARY.read_text(encoding="utf-8"), re.S)
    [query] = [b for b in blocks if MARKER in b]
    return query


def post_many_lines(books, count: int = 3000) -> Decimal:
    """One invoice of ``count`` lines with cents, written by the billing store (the one writer)."""
    books.contract("C", [books.rmm("S", "0.10", "2024-03-01")], start="2024-03-01")
    lines = [
        Line(line_key=f"prorated:S:{n}", service_id="S", kind="prorated",
             period_start=date(2024, 3, 1), period_end=date(2024, 3, 31), units=1,
             unit_price=Decimal("0.1234"), days=31, days_in_period=31,
             amount=CENTS[n % len(CENTS)], change_id=f"S:{n}")
        for n in range(count)
    ]
    total = sum((x.amount for x in lines), Decimal(0))
    with books.engine.begin() as conn:
        store.insert_invoice(conn, {
            "invoice_id": "INV-C-2024-03", "contract_id": "C", "invoice_date": date(2024, 3, 1),
            "invoice_month": date(2024, 3, 1), "currency": "USD", "total": total,
            "document_type": "invoice", "as_of": date(2024, 3, 1)}, lines)
    return total


def test_the_documented_sum_is_exact_on_both_engines(books):
    exact = post_many_lines(books)
    with books.engine.connect() as conn:
        [row] = conn.execute(text(documented_exact_sum())).mappings().all()
        naive = conn.execute(text("SELECT SUM(amount) FROM invoice_lines")).scalar()
    assert (str(row["invoice_month"]), row["currency"]) == ("2024-03-01", "USD")
    assert row["amount_e4"] == exact.scaleb(4) and Decimal(row["amount_e4"]).scaleb(-4) == exact
    assert row["amount"] == f"{exact:.4f}"
    if books.engine.dialect.name == "sqlite":  # what the documented query is for
        assert Decimal(str(naive)) != exact and isinstance(naive, float)


def test_negative_sums_render_exactly(books):
    books.contract("C", [books.rmm("S", "0.10", "2024-03-01")], start="2024-03-01")
    lines = [Line(line_key=f"adj:{n}", service_id="S", kind="prorated", period_start=date(2024, 3, 1),
                  period_end=date(2024, 3, 31), units=-1, unit_price=Decimal("0.0500"), days=1,
                  days_in_period=31, amount=Decimal("-0.05")) for n in range(3)]
    with books.engine.begin() as conn:
        store.insert_invoice(conn, {
            "invoice_id": "INV-C-2024-03", "contract_id": "C", "invoice_date": date(2024, 3, 1),
            "invoice_month": date(2024, 3, 1), "currency": "USD", "total": Decimal("-0.15"),
            "document_type": "credit_note", "as_of": date(2024, 3, 1)}, lines)
        [row] = conn.execute(text(documented_exact_sum())).mappings().all()
    assert (row["amount_e4"], row["amount"]) == (-1500, "-0.1500")


def test_integer_columns_agree_with_the_numeric_ones(books):
    """Billing writes both from one place; every posted and pending line and invoice agrees."""
    books.contract("C", [books.rmm("S", "1.1305", "2024-03-01")], start="2024-03-01",
                   currency="KWD")
    books.contract("C-R", [books.rmm("S-R", "999999.9999", "2024-03-01")], start="2024-03-01",
                   posting="review")
    books.count("S", "2024-03-01", 101)
    books.count("S-R", "2024-03-01", 7)
    books.bill("2024-03-01")
    books.change("S", "2024-03-16", 101, 100)
    books.bill("2024-03-16")
    books.bill("2024-04-01")
    for table, pairs in (("invoice_lines", (("amount", "amount_e4"), ("unit_price", "unit_price_e4"))),
                         ("billing_pending", (("amount", "amount_e4"), ("unit_price", "unit_price_e4"))),
                         ("invoices", (("total", "total_e4"),))):
        rows = books._rows(f"SELECT * FROM {table}")
        assert rows, table
        for row in rows:
            for numeric, e4 in pairs:
                assert isinstance(row[e4], int) and Decimal(row[numeric]).scaleb(4) == row[e4], (table, row)
    if books.engine.dialect.name == "postgresql":  # and the database refuses a disagreement
        with books.engine.connect() as conn:
            try:
                conn.execute(text(  # a posted invoice cannot be updated at all: a new one disagreeing
                    "INSERT INTO invoices (invoice_id, contract_id, invoice_date, invoice_month, currency, "
                    "total, total_e4, document_type, as_of, account_name) SELECT 'INV-X', contract_id, "
                    "invoice_date, DATE '1999-01-01', currency, total, total_e4 + 1, document_type, as_of, "
                    "account_name FROM invoices LIMIT 1"))
            except Exception as exc:  # noqa: BLE001 - asserted below
                assert "ck_invoices_e4" in str(exc)
            else:
                raise AssertionError("the CHECK constraint did not refuse a disagreeing total_e4")


def test_a_line_at_the_largest_amount_posts_exactly_on_both_engines(books):
    """SQLite keeps a NUMERIC that is not a whole number as a double: a pending line of
    12,192,592,594,268.3654 came back rounded, never matched its recomputation, and ``post``
    refused it for good. Each engine's limit is what it keeps exactly (PostgreSQL's columns
    hold more): a line at it reviews and posts exactly, one beyond it fails its contract
    naming the service."""
    from agent_billing.billing.money import amount_max
    from agent_billing.billing.review import post_pending

    sqlite = books.engine.dialect.name == "sqlite"
    price = "999999.9937" if sqlite else "999999999.9937"  # × 99,999 units: just under the limit
    books.contract("C-BIG", [books.rmm("S-BIG", price, "2024-03-01")], start="2024-03-01", posting="review")
    books.contract("C-OVER", [books.rmm("S-OVER", price, "2024-03-01")], start="2024-03-01")
    books.count("S-BIG", "2024-03-01", 99_999)
    books.count("S-OVER", "2024-03-01", 100_001)
    summary = run_billing(books.engine, date(2024, 3, 1))
    [failed] = summary.failed
    assert failed.contract_id == "C-OVER" and "service S-OVER" in failed.error
    assert ("on SQLite, which keeps 15 significant digits" in failed.error) == sqlite
    amount = Decimal("99998999370.01") if sqlite else Decimal("99998999999370.01")
    [pending] = books.pending("C-BIG")
    assert Decimal(str(pending["amount"])) == amount <= amount_max(books.engine.dialect.name)
    post_pending(books.engine, "C-BIG")
    [line] = books.invoice("INV-C-BIG-2024-03")["lines"]
    assert (Decimal(str(line["amount"])), line["amount_e4"]) == (amount, int(amount.scaleb(4)))
