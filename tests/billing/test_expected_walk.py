"""The expected ledger's month walk (``ExpectedLedger.entries``) against its definition.

The walk carries the units along a service's ordered changes month by month and yields compact
entries that the reconciliation compares with the posted ledger's integer sums. The reference
below is the definition it replaced, written plainly: per month, the units in effect from
``Timeline``, the day-one changes absorbed per ``absorbed_count``, amounts from ``line_amount``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from agent_billing.billing.calendar import (
    billing_month,
    days_in_month,
    month_end,
    month_start,
    months,
)
from agent_billing.billing.expected import ExpectedLedger, absorbed_count
from agent_billing.billing.model import Contract, Service, UnitChange, normal_key, prorated_key
from agent_billing.billing.money import line_amount, line_amount_e4, minor_units, price_units, to_e4
from agent_billing.billing.timeline import Timeline, ordered

SOURCES = ("nightly_sync", "get_units_now", "manual")
YEAR = (date(2024, 1, 1), date(2025, 3, 31))


def reference(contract: Contract, service: Service, as_of: date, posted: dict) -> list[tuple]:
    """(key, units, amount, period start, period end) of every expected line of ``service``."""
    last_month = billing_month(as_of, contract.billing_day, contract.start_date)
    known = tuple(c for c in service.changes if c.effective_date <= as_of)
    timeline = Timeline(service.start_units, known)
    by_month = defaultdict(list)
    for change in known:
        by_month[month_start(change.effective_date)].append(change)
    normal_months = set()
    if last_month is not None:
        normal_months.update(months(max(service.start_date, contract.start_date), last_month))
    out = []

    def line(key, units, start, end):
        days, dim = (end - start).days + 1, days_in_month(end)
        amount = line_amount(units, service.unit_price, days, dim, contract.currency)
        out.append((key, units, amount, start, end))

    for month in sorted(normal_months | by_month.keys()):
        first = max(month, service.start_date, contract.start_date)
        last = min(d for d in (month_end(month), service.end_date, contract.end_date) if d)
        if first > last:
            continue
        changes = by_month.get(month, [])
        day_one = [c for c in changes if c.effective_date == first]
        chain = [timeline.units_before(first)] + [c.units_after for c in day_one]
        billed = posted.get(normal_key(service.service_id, month))
        absorbed = absorbed_count(chain, None if billed is None else billed[0],
                                  [prorated_key(c.change_id) in posted for c in day_one])
        if month in normal_months and chain[absorbed]:
            line(normal_key(service.service_id, month), chain[absorbed], first, last)
        for change in day_one[absorbed:]:
            line(prorated_key(change.change_id), change.delta, change.effective_date, last)
        for change in changes:
            if first < change.effective_date <= last:
                line(prorated_key(change.change_id), change.delta, change.effective_date, last)
    return out


dates = st.dates(*YEAR)


@st.composite
def scenarios(draw):
    contract_start = YEAR[0] if draw(st.integers(0, 3)) else draw(dates)
    contract = Contract(
        "C", "A", draw(st.sampled_from(["USD", "JPY", "KWD"])), draw(st.integers(1, 28)),
        "automatic", contract_start, draw(st.none() | dates),
    )
    start = draw(dates)
    if draw(st.booleans()):
        start = start.replace(day=1)
    slots = draw(st.lists(  # mostly while the service runs, now and then before its start
        st.tuples(st.dates(start - timedelta(days=40), YEAR[1]) | st.dates(start, YEAR[1]),
                  st.sampled_from(SOURCES), st.integers(0, 23)),
        unique_by=lambda s: (s[0], s[1]), max_size=12,
    ))
    start_units = units = draw(st.integers(0, 30))
    changes = []
    for day, source, hour in sorted(slots):
        edge = draw(st.sampled_from(["", "first", "last"]))  # often on a month's first or last day
        day = {"": day, "first": day.replace(day=1), "last": month_end(day)}[edge]
        if any(c.effective_date == day and c.source == source for c in changes):
            continue
        after = draw(st.integers(0, 30).filter(lambda u, before=units: u != before))
        detected = datetime.combine(day, time(hour), tzinfo=UTC)
        changes.append(UnitChange(f"S:{day}:{source}", "S", day, units, after, after - units,
                                  source, detected))
        units = after
    service = Service(
        "S", "Agents", draw(st.decimals(Decimal("0.0001"), Decimal("999.9999"), places=4)),
        start, draw(st.none() | st.dates(start, YEAR[1])), start_units, ordered(changes),
    )
    as_of = draw(dates)
    # A posted ledger: some normal lines (mostly with units the service had at some point, so
    # that they match a day-one chain) and some prorated lines already posted.
    posted = {}
    seen_units = st.sampled_from([start_units] + [c.units_after for c in changes])
    for month in months(YEAR[0], YEAR[1]):
        if draw(st.integers(0, 2)) == 0:
            posted[normal_key("S", month)] = (draw(seen_units | st.integers(0, 30)), 0)
    for change in changes:
        if draw(st.integers(0, 3)) == 0:
            posted[prorated_key(change.change_id)] = (change.delta, 0)
    return contract, service, as_of, posted


@settings(max_examples=300, deadline=None)
@given(scenario=scenarios())
def test_the_walk_yields_the_lines_of_the_definition(scenario):
    contract, service, as_of, posted = scenario
    ledger = ExpectedLedger(contract, [service], as_of, posted)
    entries = list(ledger.entries())
    walked = []
    for entry in entries:
        full = ledger.line(entry)
        assert entry[0] == full.line_key and entry[1] == full.units
        assert entry[2] == to_e4(full.amount)  # the compact amount is the line's, exactly
        walked.append((full.line_key, full.units, full.amount, full.period_start, full.period_end))
    assert walked == reference(contract, service, as_of, posted)
    assert len({e[0] for e in entries}) == len(entries)  # keys are unique (reconcile counts them)


@settings(max_examples=300, deadline=None)
@given(
    units=st.integers(-500, 500),
    price=st.decimals(Decimal("0"), Decimal("999999999.9999"), places=4),
    days_in_period=st.integers(28, 31),
    data=st.data(),
    currency=st.sampled_from(["USD", "JPY", "KWD", "CLF", "XXX"]),
)
def test_the_integer_amount_is_the_line_amount(units, price, days_in_period, data, currency):
    days = data.draw(st.integers(0, days_in_period))
    amount = line_amount(units, price, days, days_in_period, currency)
    e4 = line_amount_e4(units, price_units(price), days, days_in_period, minor_units(currency))
    assert e4 == to_e4(amount)
