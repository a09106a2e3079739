"""A service's unit history as pure data: observations in, unit changes out (no database).

A service's units on a date are the distinct agents in its scope. Its unit history is the
sequence of its observations (the counts of good snapshots and the Get Units Now readings) in
order of position: local date, then time. The first observation sets the starting units; each
later one that differs is a change effective on its date, from the units of the observation
before it. ``store.py`` reads the observations of a window and writes what this module derives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from agent_billing.warehouse.values import as_utc

NIGHTLY = "nightly_sync"
READING = "get_units_now"
MANUAL = "manual"


def change_id(service_id: str, effective_date: date, source: str) -> str:
    """Deterministic id: re-deriving a change gives it the same id (billing links to it)."""
    return f"{service_id}:{effective_date.isoformat()}:{source}"


@dataclass(frozen=True)
class Change:
    service_id: str
    effective_date: date
    units_before: int
    units_after: int
    source: str  # nightly_sync | get_units_now | manual
    detected_at: datetime  # when the observation behind it was made; orders same-day changes

    @property
    def change_id(self) -> str:
        return change_id(self.service_id, self.effective_date, self.source)

    @property
    def delta(self) -> int:
        return self.units_after - self.units_before


@dataclass(frozen=True, order=True)
class Position:
    """Where an observation sits in a service's unit history: its local date, then its time.

    ``at`` always falls on ``day`` in the billing timezone, so positions order like ``at``."""

    day: date
    at: datetime


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of ``day`` in the billing timezone, in UTC."""
    return datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)


def nightly_position(snapshot_date: date, observed_at: datetime | None, tz: ZoneInfo) -> Position:
    """A snapshot stands at its observation time, or at the start of its date when it was
    observed later (a late observation is taken as that date's)."""
    start = day_start(snapshot_date, tz)
    if observed_at is None:
        return Position(snapshot_date, start)
    observed_at = as_utc(observed_at)
    if observed_at.astimezone(tz).date() != snapshot_date:
        return Position(snapshot_date, start)
    return Position(snapshot_date, observed_at)


@dataclass(frozen=True)
class Observation:
    service_id: str
    position: Position
    units: int
    source: str  # nightly_sync | get_units_now


@dataclass(frozen=True)
class Window:
    """The observations whose changes are derived again: after ``lower`` (the previous good
    snapshot, whose units are the 'before'), up to and including ``upper`` (the next one)."""

    lower: Position | None
    upper: Position | None

    def __contains__(self, position: Position) -> bool:
        return (self.lower is None or position > self.lower) and (self.upper is None or position <= self.upper)


def last_press_per_day(readings: Iterable[Observation]) -> list[Observation]:
    """A day's reading is its last press: a later press the same day supersedes an earlier
    one, even one made before that night's snapshot. Billing reads a service's first reading
    by the same rule in SQL (``sql/billing/services.sql``); a test of a service's first day of
    presses holds the two together."""
    last: dict[tuple[str, date], Observation] = {}
    for reading in sorted(readings, key=lambda o: o.position):
        last[(reading.service_id, reading.position.day)] = reading
    return list(last.values())


def _order(obs: Observation) -> tuple[Position, bool]:
    """A service's observations in order: by position; at one instant the snapshot's count
    first, then a reading. One order for ``units_at`` and ``derive_changes``, so a window's
    'before' is the units its earlier window ended on, even for a press at the very instant of
    a snapshot."""
    return (obs.position, obs.source != NIGHTLY)


def units_at(observations: Iterable[Observation], position: Position) -> dict[str, int]:
    """Each service's units at its latest observation at or before ``position``."""
    latest: dict[str, Observation] = {}
    for obs in observations:
        if obs.position <= position:
            seen = latest.get(obs.service_id)
            if seen is None or _order(obs) > _order(seen):
                latest[obs.service_id] = obs
    return {sid: obs.units for sid, obs in latest.items()}


def derive_changes(before: Mapping[str, int], observations: Iterable[Observation]) -> list[Change]:
    """The changes of a window: each observation against the one before it (``before`` holds
    the units at the window's lower bound; a service missing there starts at its first)."""
    running = dict(before)
    changes = []
    for obs in sorted(observations, key=lambda o: (o.service_id, _order(o))):
        previous = running.get(obs.service_id)
        running[obs.service_id] = obs.units
        if previous is not None and previous != obs.units:
            changes.append(
                Change(obs.service_id, obs.position.day, previous, obs.units, obs.source, obs.position.at)
            )
    return changes


def manual_change(
    service_id: str, effective_date: date, units_before: int, units_after: int,
    replaced: Change | None, now: datetime,
) -> Change | None:
    """A manual service's new units (SPEC 4.2). A second edit effective the same day replaces
    the first one, from the first one's 'before'; no change when the units come back."""
    before = replaced.units_before if replaced is not None else units_before
    if units_after == before:
        return None
    return Change(service_id, effective_date, before, units_after, MANUAL, now)
