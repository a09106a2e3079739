"""The expected ledger of a contract as of a date: every line it should have been billed.

Normal lines (one per service and month) are expected for the months whose invoice date is
on or before ``as_of``; prorated lines (one per unit change) for the changes effective on or
before ``as_of``. The only input taken from the posted ledger is which changes effective on a
month's first active day its posted normal line already absorbed (see ``absorbed_count``).

The ledger is walked, not stored: from the first month the contract's last run left unsettled
(``billing.settled``), or the whole history when its inputs changed; nearly every line walked
is posted already, unchanged.
``ExpectedLedger.entries`` yields each line in a compact form, what the reconciliation compares
with the posted ledger (key, units, amount in ten-thousandths); ``ExpectedLedger.line`` builds
the full line, description included, for the few lines that have to be written.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date, timedelta

from agent_billing.billing.calendar import (
    billing_month,
    days_in_month,
    month_end,
    month_label,
    month_start,
)
from agent_billing.billing.model import (
    Contract,
    Line,
    PostedLine,
    Service,
    UnitChange,
    normal_key,
    normal_key_prefix,
    prorated_key,
)
from agent_billing.billing.money import line_amount, line_amount_e4, minor_units, price_units
from agent_billing.wording import units_text

PostedNet = Mapping[str | None, tuple[int, int]]
"""The posted ledger as the expected one reads it: per posted normal or prorated line key, its
net units and net amount in ten-thousandths (adjustments included); ``store.load_posted_net``
(under the key None: adjustments whose line is missing)."""

Entry = tuple[str, int, int, Service, UnitChange | None, date, date]
"""An expected line in compact form: (line key, units, amount in ten-thousandths, service,
its change (None for a normal line), first day, last day)."""


class ExpectedLedger:
    def __init__(
        self, contract: Contract, services: list[Service], as_of: date, posted: PostedNet,
        since: date | None = None,
    ) -> None:
        self.contract = contract
        # each with its changes in ``timeline.ordered`` order; from ``since``: the changes from
        # that month and the units in effect when it starts as its ``start_units``
        self.services = services
        self.as_of = as_of
        self.since = since  # the first month walked (None: the whole ledger)
        self.last_month = billing_month(as_of, contract.billing_day, contract.start_date)
        self.contract_start = contract.start_date
        self._posted = posted
        self._months: dict[date, tuple[date, int, str, date]] = {}

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

    def why_gone(self, line: PostedLine) -> str:
        """Why a posted line is no longer expected, for its adjustment: days its service and
        contract no longer cover; for a normal line within them, a month without units; for a
        prorated line, a start moved after its change, its change now in the month's normal
        line (on the first active day), or a change that no longer exists. Empty when its
        service is not in this ledger."""
        service = next((s for s in self.services if s.service_id == line.service_id), None)
        if service is None:
            return ""
        first, last = self._active_days(service)
        if line.period_end < first or (last is not None and line.period_start > last):
            return f"the service or its contract no longer covers {line.period_start}..{line.period_end}"
        if line.kind != "prorated":
            return "the service has no units on the month's first active day now"
        if line.period_start < first:  # a prorated line starts on its change's day
            return f"the service or its contract now starts {first}, after its unit change"
        if any(c.change_id == line.change_id for c in service.changes):
            return "its unit change is now billed in the month's normal line"
        return "its unit change no longer exists"

    def _active_days(self, service: Service) -> tuple[date, date | None]:
        """The first and last day a service bills: its dates within its contract's (None: no end)."""
        ends = [d for d in (service.end_date, self.contract.end_date) if d is not None]
        return max(service.start_date, self.contract.start_date), min(ends) if ends else None

    def entries(self) -> Iterator[Entry]:
        """Every expected line in compact form, service by service, month by month."""
        for service in self.services:
            yield from self._service_entries(service)

    def line(self, entry: Entry) -> Line:
        """The full line of an entry."""
        _, units, _, service, change, first_day, last_day = entry
        if change is None:
            return _normal_line(
                self.contract, service, month_start(first_day), (first_day, last_day), units)
        return _prorated_line(self.contract, service, change, last_day)

    def _month(self, month: date) -> tuple[date, int, str, date]:
        """(last day, days, ``YYYY-MM``, next month) of a month, computed once per ledger."""
        info = self._months.get(month)
        if info is None:
            end = month_end(month)
            info = self._months[month] = (
                end, days_in_month(month), month_label(month), end + timedelta(days=1))
        return info

    def _service_entries(self, service: Service) -> Iterator[Entry]:
        """One service's lines, month by month over the months of its normal lines and of its
        changes (and any month between them, which yields nothing). The units in effect are
        carried along its ordered changes (``Timeline.units_before`` of each month's first
        active day)."""
        contract, posted = self.contract, self._posted
        changes = service.changes
        if changes and changes[-1].effective_date > self.as_of:
            changes = tuple(c for c in changes if c.effective_date <= self.as_of)
        first_active, last_active = self._active_days(service)
        normal_from, normal_to = month_start(first_active), self.last_month
        if normal_to is None or normal_from > normal_to:  # no normal line
            if not changes:
                return
            normal_from = normal_to = None
            month, last_month = month_start(changes[0].effective_date), month_start(changes[-1].effective_date)
        else:
            month, last_month = normal_from, normal_to
            if changes:
                month = min(month, month_start(changes[0].effective_date))
                last_month = max(last_month, month_start(changes[-1].effective_date))
        if self.since is not None and month < self.since:
            month = self.since
        price_e4, exponent = price_units(service.unit_price), minor_units(contract.currency)
        normal_prefix = normal_key_prefix(service.service_id)
        units, i, count = service.start_units, 0, len(changes)
        while month <= last_month:
            end_of_month, dim, label, next_month = self._month(month)
            j = i  # changes[i:j]: this month's
            while j < count and changes[j].effective_date <= end_of_month:
                j += 1
            first_day = max(month, first_active)
            last_day = end_of_month if last_active is None else min(end_of_month, last_active)
            if first_day <= last_day:
                k = i
                while k < j and changes[k].effective_date < first_day:
                    units = changes[k].units_after
                    k += 1
                d1 = k  # changes[k:d1]: effective on the first active day
                while d1 < j and changes[d1].effective_date == first_day:
                    d1 += 1
                key = normal_prefix + label
                if d1 > k:
                    day_one = changes[k:d1]
                    chain = [units] + [c.units_after for c in day_one]
                    billed = posted.get(key)
                    absorbed = absorbed_count(
                        chain,
                        None if billed is None else billed[0],
                        [prorated_key(c.change_id) in posted for c in day_one],
                    )
                    normal_units, rest = chain[absorbed], k + absorbed
                else:
                    normal_units, rest = units, k
                # A month without units has no normal line; a later change brings its own lines.
                if normal_units and normal_from is not None and normal_from <= month <= normal_to:
                    days = (last_day - first_day).days + 1
                    yield (key, normal_units,
                           line_amount_e4(normal_units, price_e4, days, dim, exponent),
                           service, None, first_day, last_day)
                for n in range(rest, j):
                    change = changes[n]
                    if change.effective_date > last_day:
                        break
                    days = (last_day - change.effective_date).days + 1
                    yield (prorated_key(change.change_id), change.delta,
                           line_amount_e4(change.delta, price_e4, days, dim, exponent),
                           service, change, first_day, last_day)
            if j > i:  # the month's changes set the units after it, active or not
                units = changes[j - 1].units_after
            i, month = j, next_month


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
        description=f"{service.name}, {month_label(month)}: {units_text(units)}{partial}",
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
            f"{service.name}: {change.units_before} -> {units_text(change.units_after)} "
            f"from {change.effective_date}, {days}/{dim} days"
        ),
    )
