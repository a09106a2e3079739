"""The expected ledger of a contract as of a date: every line it should have been billed.

Normal lines (one per service and month) are expected for the months whose invoice date is
on or before ``as_of``; prorated lines (one per unit change) for the changes effective on or
before ``as_of``. The only input taken from the posted ledger is which changes effective on a
month's first active day its posted normal line already absorbed (see ``absorbed_count``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from agent_billing.billing.calendar import (
    billing_month,
    days_in_month,
    month_end,
    month_label,
    month_start,
    months,
)
from agent_billing.billing.model import (
    Contract,
    Line,
    PostedLine,
    Service,
    UnitChange,
    normal_key,
    prorated_key,
)
from agent_billing.billing.money import line_amount
from agent_billing.billing.timeline import Timeline


class PostedUnits(Protocol):
    """What the expected ledger needs from the posted ledger (``reconcile.PostedLedger``)."""

    def net_units(self, line_key: str) -> int | None:
        """Units billed under ``line_key`` including its adjustments; None when not posted."""

    def is_posted(self, line_key: str) -> bool: ...


@dataclass(frozen=True)
class ExpectedLedger:
    as_of: date
    last_month: date | None  # the latest month whose invoice date is <= as_of
    contract_start: date
    lines: dict[str, Line]

    def covers(self, line: PostedLine) -> bool:
        """Whether a posted normal or prorated line is within this ledger's horizon: its month
        is invoiced by ``as_of`` or lies wholly before the contract's start (a start corrected
        to a later date: the month is never billed, so its line is reversed now), or its change
        (effective on its period start) is known by then. Lines beyond the horizon (a month
        whose invoice date moved later) are left alone, not reversed."""
        if line.kind == "normal":
            month = month_start(line.period_start)
            return (self.last_month is not None and month <= self.last_month) or (
                month_end(month) < self.contract_start)
        return line.period_start <= self.as_of


def absorbed_count(chain: list[int], billed_units: int | None, prorated_posted: list[bool]) -> int:
    """How many of the changes effective on a month's first active day its normal line includes.

    ``chain`` is the units before those changes followed by the units after each of them;
    ``billed_units`` the units the posted normal line bills (None: not posted, so it will
    include them all); ``prorated_posted[j]`` whether change j already has a prorated line,
    which proves it was not absorbed. The posted units tell where the normal line stopped;
    if they match no point of the chain, history was rewritten: the normal line is expected
    to include every change and the reconciliation adjusts it.
    """
    last = len(chain) - 1
    if billed_units is None:
        return last
    limit = next((j for j, posted in enumerate(prorated_posted) if posted), last)
    for k in range(limit, -1, -1):
        if chain[k] == billed_units:
            return k
    return last


def expected_ledger(
    contract: Contract, services: list[Service], as_of: date, posted: PostedUnits
) -> ExpectedLedger:
    last_month = billing_month(as_of, contract.billing_day, contract.start_date)
    lines = {
        line.line_key: line
        for service in services
        for line in _service_lines(contract, service, as_of, last_month, posted)
    }
    return ExpectedLedger(as_of, last_month, contract.start_date, lines)


def _active_days(contract: Contract, service: Service, month: date) -> tuple[date, date] | None:
    first = max(month, service.start_date, contract.start_date)
    last = min(d for d in (month_end(month), service.end_date, contract.end_date) if d is not None)
    return (first, last) if first <= last else None


def _service_lines(
    contract: Contract,
    service: Service,
    as_of: date,
    last_month: date | None,
    posted: PostedUnits,
) -> Iterator[Line]:
    known = tuple(c for c in service.changes if c.effective_date <= as_of)
    timeline = Timeline(service.start_units, known)
    by_month: dict[date, list[UnitChange]] = defaultdict(list)
    for change in known:
        by_month[month_start(change.effective_date)].append(change)
    normal_months: set[date] = set()
    if last_month is not None:
        first = max(service.start_date, contract.start_date)
        normal_months.update(months(first, last_month))
    for month in sorted(normal_months | by_month.keys()):
        active = _active_days(contract, service, month)
        if active is None:
            continue
        first_day, last_day = active
        changes = by_month.get(month, [])
        day_one = [c for c in changes if c.effective_date == first_day]
        chain = [timeline.units_before(first_day)] + [c.units_after for c in day_one]
        key = normal_key(service.service_id, month)
        absorbed = absorbed_count(
            chain,
            posted.net_units(key),
            [posted.is_posted(prorated_key(c.change_id)) for c in day_one],
        )
        # A month without units has no normal line; a later change brings its own lines.
        if month in normal_months and chain[absorbed]:
            yield _normal_line(contract, service, month, active, chain[absorbed])
        for change in day_one[absorbed:]:
            yield _prorated_line(contract, service, change, last_day)
        for change in changes:
            if first_day < change.effective_date <= last_day:
                yield _prorated_line(contract, service, change, last_day)


def _normal_line(
    contract: Contract, service: Service, month: date, active: tuple[date, date], units: int
) -> Line:
    first_day, last_day = active
    days, dim = (last_day - first_day).days + 1, days_in_month(month)
    partial = "" if days == dim else f", {days}/{dim} days"
    return Line(
        line_key=normal_key(service.service_id, month),
        service_id=service.service_id,
        kind="normal",
        period_start=first_day,
        period_end=last_day,
        units=units,
        unit_price=service.unit_price,
        days=days,
        days_in_period=dim,
        amount=line_amount(units, service.unit_price, days, dim, contract.currency),
        description=f"{service.name}, {month_label(month)}: {units} units{partial}",
    )


def _prorated_line(contract: Contract, service: Service, change: UnitChange, last_day: date) -> Line:
    start = change.effective_date
    days, dim = (last_day - start).days + 1, days_in_month(last_day)
    return Line(
        line_key=prorated_key(change.change_id),
        service_id=service.service_id,
        kind="prorated",
        period_start=start,
        period_end=last_day,
        units=change.delta,
        unit_price=service.unit_price,
        days=days,
        days_in_period=dim,
        amount=line_amount(change.delta, service.unit_price, days, dim, contract.currency),
        change_id=change.change_id,
        description=(
            f"{service.name}: {change.units_before} -> {change.units_after} units "
            f"from {change.effective_date}, {days}/{dim} days"
        ),
    )
