"""The view ``unit_change_billing``: how each unit change was billed, as finance reads it to
answer "what did I pay for this change?" (data dictionary, 3.3 and 5.4)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import text

PRICE = Decimal("12.00")


def prorated_e4(units: int, days: int, days_in_month: int) -> int:
    """The line amount in ten-thousandths: units × price × days / month, rounded half-up to cents."""
    amount = (units * PRICE * days / days_in_month).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return int(amount * 10000)


def history(books) -> dict[str, dict]:
    with books.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM unit_change_billing WHERE service_id = 'S'")).mappings()
        return {r["change_id"]: dict(r) for r in rows}


def test_a_corrected_change_shows_what_the_customer_pays_for_it_now(corrected):
    """10 -> 11 on March 15 was posted on April's invoice (1 × 17/31); a backfill made it 10 -> 12,
    and May's invoice adjusted the line by one more unit: the change now costs 2 × 17/31."""
    change = history(corrected)["S:2024-03-15:nightly_sync"]
    assert change["billing"] == "posted"
    assert change["invoice_id"] is not None and change["contract_id"] == "C"
    assert (change["units_before"], change["units_after"], change["delta"]) == (10, 12, 2)
    assert change["amount_e4"] == prorated_e4(1, 17, 31)
    assert change["net_amount_e4"] == prorated_e4(2, 17, 31)
    assert Decimal(str(change["net_amount"])) == Decimal(prorated_e4(2, 17, 31)) / 10000
    assert change["pending_adjustment"] is None


def test_a_change_after_the_invoice_waits_pending(corrected):
    corrected.change("S", "2024-05-10", 12, 13)
    corrected.bill("2024-05-12")
    change = history(corrected)["S:2024-05-10:nightly_sync"]
    assert change["billing"] == "pending" and change["invoice_id"] is None
    assert change["line_id"] is not None
    assert change["amount_e4"] == prorated_e4(1, 22, 31)
    assert change["net_amount_e4"] is None


def test_a_withdrawn_change_stays_listed_until_its_reversal_is_posted(corrected):
    """A re-derivation deleted the posted change: it is listed as withdrawn, its reversal waits
    for June's invoice, and once posted the change costs nothing."""
    corrected.delete("S:2024-03-15:nightly_sync")
    corrected.bill("2024-05-12")
    change = history(corrected)["S:2024-03-15:nightly_sync"]
    assert change["billing"] == "withdrawn" and change["units_after"] is None
    assert change["delta"] == 1  # the units its posted line billed
    assert change["net_amount_e4"] == prorated_e4(2, 17, 31)
    assert Decimal(str(change["pending_adjustment"])) == -Decimal(prorated_e4(2, 17, 31)) / 10000

    corrected.bill("2024-06-01")
    change = history(corrected)["S:2024-03-15:nightly_sync"]
    assert (change["billing"], change["net_amount_e4"], change["pending_adjustment"]) == ("withdrawn", 0, None)


def test_a_change_absorbed_into_a_normal_line_has_no_prorated_line(corrected):
    corrected.change("S", "2024-06-01", 12, 14)
    corrected.bill("2024-06-01")
    change = history(corrected)["S:2024-06-01:nightly_sync"]
    assert change["billing"] == "no prorated line"
    assert (change["line_id"], change["amount_e4"], change["invoice_id"]) == (None, None, None)
    assert len(history(corrected)) == 2  # one row per change
