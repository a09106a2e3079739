"""Pure rules of the engine: money, calendar, units timeline, day-one absorption, run dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from types import SimpleNamespace

import pytest

from agent_billing.billing.calendar import billing_month, invoice_date, parse_month
from agent_billing.billing.expected import absorbed_count
from agent_billing.billing.model import UnitChange
from agent_billing.billing.money import line_amount, minor_units
from agent_billing.billing.timeline import Timeline, ordered, starting_units
from agent_billing.billing.trigger import billing_dates
from agent_billing.errors import UserError

D = date.fromisoformat


@pytest.mark.parametrize(
    ("units", "price", "days", "dim", "currency", "expected"),
    [
        (1, "12.00", 17, 31, "USD", "6.58"),
        (-3, "25.00", 10, 29, "USD", "-25.86"),
        (1, "1.13", 15, 30, "USD", "0.57"),  # 0.565: half-up (half-even and floats give 0.56)
        (-1, "1.13", 15, 30, "USD", "-0.57"),  # symmetric: credits mirror debits
        (3, "10.00", 10, 30, "USD", "10.00"),  # one rounding per line, not per unit
        (1, "1000", 17, 31, "JPY", "548"),
        (1, "1.1305", 15, 30, "KWD", "0.565"),  # 0.56525
        (7, "0.0001", 1, 31, "EUR", "0.00"),
    ],
)
def test_line_amount(units, price, days, dim, currency, expected):
    amount = line_amount(units, Decimal(price), days, dim, currency)
    assert amount == Decimal(expected) and str(amount) == expected


def test_prices_beyond_four_decimals_are_refused():
    with pytest.raises(ValueError, match="more than 4 decimals"):
        line_amount(1, Decimal("1.00005"), 1, 1, "USD")
    assert (minor_units("jpy"), minor_units("BHD"), minor_units("XYZ")) == (0, 3, 2)


@pytest.mark.parametrize(
    ("as_of", "billing_day", "start", "month"),
    [
        ("2024-03-01", 1, "2024-01-01", "2024-03-01"),
        ("2024-03-14", 15, "2024-01-01", "2024-02-01"),
        ("2024-03-15", 15, "2024-01-01", "2024-03-01"),
        ("2024-02-29", 1, "2024-03-01", None),  # before the contract
        ("2024-03-10", 1, "2024-03-15", None),  # first invoice date is the contract start
        ("2024-03-15", 1, "2024-03-15", "2024-03-01"),
    ],
)
def test_billing_month(as_of, billing_day, start, month):
    assert billing_month(D(as_of), billing_day, D(start)) == (D(month) if month else None)


def test_invoice_date_of_the_first_month_is_the_contract_start():
    assert invoice_date(D("2024-03-01"), 1, D("2024-03-15")) == D("2024-03-15")
    assert invoice_date(D("2024-04-01"), 5, D("2024-03-15")) == D("2024-04-05")


def test_parse_month():
    assert parse_month("2024-03") == D("2024-03-01")
    for bad in ("2024-03-01", "March", "2024-3"):
        with pytest.raises(UserError, match=f"invalid month '{bad}': expected YYYY-MM"):
            parse_month(bad)
    for bad, why in (("2024-13", "there is no month 13"), ("2024-00", "there is no month 00"),
                     ("0000-05", "there is no year 0000")):
        with pytest.raises(UserError, match=f"invalid month '{bad}': {why}"):
            parse_month(bad)


def change(day: str, before: int, after: int, source: str = "nightly_sync", hour: int = 2) -> UnitChange:
    detected = datetime.combine(D(day), time(hour), tzinfo=UTC)
    return UnitChange(f"S:{day}:{source}", "S", D(day), before, after, after - before, source, detected)


def test_timeline_units_in_effect():
    changes = ordered([
        change("2024-03-15", 11, 9, "manual", hour=9), change("2024-03-15", 10, 11), change("2024-04-01", 9, 12)
    ])
    assert [c.source for c in changes[:2]] == ["nightly_sync", "manual"]  # in the order observed
    timeline = Timeline(10, changes)  # 10: the first count
    assert timeline.units_before(D("2024-03-01")) == 10
    assert timeline.units_before(D("2024-03-15")) == 10
    assert timeline.units_before(D("2024-03-16")) == 9  # the last change of the 15th wins
    assert timeline.units_before(D("2024-12-31")) == 12


def test_a_press_before_the_nightly_snapshot_comes_first():
    """Get Units Now at 00:30 (3 -> 5), then the 02:00 snapshot sees 4 (5 -> 4): 4 units."""
    changes = ordered([change("2024-03-15", 5, 4), change("2024-03-15", 3, 5, "get_units_now", hour=0)])
    assert [c.source for c in changes] == ["get_units_now", "nightly_sync"]
    assert Timeline(3, changes).units_before(D("2024-03-16")) == 4


def test_starting_units():
    assert starting_units(3, 3, 9) == 3  # what the first change started from: its first observation
    assert starting_units(3, None, 9) == 3  # no change: the first observation (count or reading)
    assert starting_units(None, 4, 9) == 4  # a manual service: what its first change started from
    assert starting_units(None, None, 9) == 9  # a manual service without changes


@pytest.mark.parametrize(
    ("chain", "billed", "prorated_posted", "absorbed"),
    [
        ([5, 6], None, [False], 1),  # not invoiced yet: the normal line includes the change
        ([5, 6], 6, [False], 1),  # invoiced after the change was known
        ([5, 6], 5, [False], 0),  # invoiced before: full-month proration
        ([5, 6, 5], 5, [False, False], 2),  # the latest explanation wins
        ([5, 6, 5], 5, [True, False], 0),  # ... unless a proration proves otherwise
        ([5, 6, 7], 6, [False, False], 1),
        ([5, 6], 9, [False], 1),  # unexplained: the reconciliation adjusts the normal line
    ],
)
def test_absorbed_count(chain, billed, prorated_posted, absorbed):
    assert absorbed_count(chain, billed, prorated_posted) == absorbed


def test_billing_dates_from_params_or_asset_events():
    events = [SimpleNamespace(extra={"snapshot_date": day})
              for day in ("2024-03-03", "2024-03-01", "2024-03-03", "2024-03-02")]
    assert billing_dates(None, events) == [D("2024-03-01"), D("2024-03-02"), D("2024-03-03")]
    assert billing_dates("2024-05-01", events) == [D("2024-05-01")]
    with pytest.raises(UserError, match="no as_of param and no triggering asset event"):
        billing_dates(None, [])
    with pytest.raises(UserError, match="no snapshot_date"):
        billing_dates(None, [SimpleNamespace(extra={})])
    with pytest.raises(UserError, match="invalid snapshot_date 'yesterday'"):
        billing_dates(None, [SimpleNamespace(extra={"snapshot_date": "yesterday"})])
