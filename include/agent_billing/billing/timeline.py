"""Units in effect per service per date, from the starting units and the unit changes."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from datetime import date
from itertools import pairwise
from operator import attrgetter

from agent_billing.billing.model import UnitChange
from agent_billing.warehouse.values import as_utc


def ordered(changes: Iterable[UnitChange]) -> tuple[UnitChange, ...]:
    """Changes in the order they were observed; of several on one date the last one sets the
    units of that date (a Get Units Now press before the 02:00 snapshot comes first).

    The order is (effective date, detection time in UTC, change id). Dates rarely tie, so the
    detection times are read (``as_utc``: SQLite hands back naive text) only when some do."""
    out = sorted(changes, key=_effective_date)
    if any(a.effective_date == b.effective_date for a, b in pairwise(out)):
        out.sort(key=lambda c: (c.effective_date, as_utc(c.detected_at), c.change_id))
    return tuple(out)


_effective_date = attrgetter("effective_date")


def starting_units(first_observation: int | None, first_change_before: int | None, configured_units: int) -> int:
    """Units before the first change: what the first change started from, which the unit
    history made from its first observation, in its own order of readings and counts; without
    changes, the first observation (a count or a reading: every observation has the same units
    then); else the configured units (a manual service without changes; 0 for an rmm service
    not observed yet). The caller reads them as of the run's date (``billing/services.sql``,
    ``billing/first_changes.sql``):
    a manual service's changes of any date (``services.units`` alone would not do: a
    future-dated manual change has already set it), an rmm service's observations and changes
    on or before that date."""
    if first_change_before is not None:
        return first_change_before
    if first_observation is not None:
        return first_observation
    return configured_units


class Timeline:
    """Units in effect on a date: ``units_after`` of the latest change effective on or before
    it, else the starting units."""

    def __init__(self, start_units: int, changes: tuple[UnitChange, ...]) -> None:
        self._start = start_units
        self._dates = [c.effective_date for c in changes]
        self._units = [c.units_after for c in changes]

    def units_before(self, day: date) -> int:
        """Units in effect at the start of ``day``, before the changes effective that day."""
        index = bisect_left(self._dates, day)
        return self._units[index - 1] if index else self._start
