"""Unit counts and unit changes (SPEC 4.1, 4.3, 4.4).

A service's units on a date are the distinct agents in its scope (``service_agents``). Its
unit history is the sequence of its observations: the counts of good snapshots and the Get
Units Now readings, in order of position (local date, then time). The first observation sets
the starting units; each later one that differs is a change effective on its date (source
``nightly_sync`` or ``get_units_now``), from the units of the observation before it. When an
observation appears, changes or goes away (a re-run, a release, a discard, a press), the
changes between the previous good snapshot and the next one are derived again: nothing else
can depend on it, so any order of re-runs and backfills converges to the same rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, text

from agent_billing.sql import load_sql
from agent_billing.sync.runs import get_run
from agent_billing.warehouse.values import as_date, as_datetime, as_utc

log = logging.getLogger(__name__)
NIGHTLY = "nightly_sync"
READING = "get_units_now"


@dataclass(frozen=True)
class CountResult:
    snapshot_date: date
    services: int
    units: int
    agents_counted: int


def count_units(conn: Connection, snapshot_date: date, landed_views: set[str] | None = None) -> CountResult:
    """Replace the date's ``service_agents`` and ``service_unit_counts`` (set-based SQL).

    A service whose view's members were not landed for the date (it was added after the
    extract, and landings are reused) gets no count rather than a false zero.
    """
    params = {"snapshot_date": snapshot_date}
    clear_counts(conn, snapshot_date)
    agents = conn.execute(load_sql("sync/service_agents_insert.sql"), params).rowcount
    if conn.dialect.name == "postgresql":
        conn.execute(text("ANALYZE service_agents"))
    services = conn.execute(load_sql("sync/service_unit_counts_insert.sql"), params).rowcount
    if landed_views is not None:
        blind = [
            (sid, view) for sid, view in conn.execute(
                text("SELECT service_id, vsa_view_id FROM services WHERE vsa_view_id IS NOT NULL")
            )
            if view not in landed_views
        ]
        for sid, view in blind:
            for table in ("service_unit_counts", "service_agents"):
                conn.execute(
                    text(f"DELETE FROM {table} WHERE snapshot_date = :d AND service_id = :s"),
                    {"d": snapshot_date, "s": sid},
                )
            log.warning(
                "%s: view %s of service %s was not extracted for this date; no count recorded",
                snapshot_date, view, sid,
            )
        services -= len(blind)
    units = conn.execute(
        text("SELECT COALESCE(SUM(units), 0) FROM service_unit_counts WHERE snapshot_date = :d"),
        {"d": snapshot_date},
    ).scalar_one()
    log.info("counted %s: %d services, %d units", snapshot_date, services, units)
    return CountResult(snapshot_date, services, int(units), agents)


def clear_counts(conn: Connection, snapshot_date: date) -> None:
    for table in ("service_unit_counts", "service_agents"):
        conn.execute(text(f"DELETE FROM {table} WHERE snapshot_date = :d"), {"d": snapshot_date})


@dataclass(frozen=True)
class Change:
    change_id: str
    service_id: str
    effective_date: date
    units_before: int
    units_after: int
    source: str
    detected_at: datetime  # when the observation behind it was made; orders same-day changes

    @property
    def delta(self) -> int:
        return self.units_after - self.units_before


def change_id(service_id: str, effective_date: date, source: str) -> str:
    """Deterministic id: re-deriving a change gives it the same id (billing links to it)."""
    return f"{service_id}:{effective_date.isoformat()}:{source}"


@dataclass(frozen=True, order=True)
class Position:
    """Where an observation sits in a service's unit history: its local date, then its time."""

    day: date
    at: datetime


def nightly_position(snapshot_date: date, observed_at: datetime | None, tz: ZoneInfo) -> Position:
    """A snapshot stands at its observation time, or at the start of its date when it was
    observed later (a late observation is taken as that date's)."""
    start = day_start(snapshot_date, tz)
    if observed_at is None or as_utc(observed_at).astimezone(tz).date() != snapshot_date:
        return Position(snapshot_date, start)
    return Position(snapshot_date, as_utc(observed_at))


@dataclass(frozen=True)
class Observation:
    service_id: str
    position: Position
    units: int
    source: str  # nightly_sync | get_units_now


def good_snapshots(conn: Connection, tz: ZoneInfo) -> dict[date, Position]:
    rows = conn.execute(text("SELECT snapshot_date, observed_at FROM sync_runs WHERE status = 'complete'"))
    return {as_date(d): nightly_position(as_date(d), as_datetime(at), tz) for d, at in rows}


# Any bigint: the key of the PostgreSQL advisory lock that serialises unit-history updates.
UNIT_HISTORY_LOCK = 7_255_110_501


def lock_unit_history(conn: Connection) -> None:
    """Serialise whoever re-derives unit changes (backfill runs of several dates can run at
    once): on PostgreSQL a transaction-scoped advisory lock; SQLite has one writer anyway."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UNIT_HISTORY_LOCK})


def rederive_around(
    conn: Connection, tz: ZoneInfo, position: Position, *, since: Position | None = None
) -> list[Change]:
    """Re-derive every change whose 'before' can depend on an observation at ``position``
    (or on any observation from ``since`` up to it): those after the previous good snapshot,
    up to and including the next good snapshot."""
    lock_unit_history(conn)
    good = good_snapshots(conn, tz)
    lower = max((p for p in good.values() if p < (since or position)), default=None)
    upper = min((p for p in good.values() if p > position), default=None)
    found = _rederive_window(conn, tz, good, lower, upper)
    refresh_service_units(conn, tz)
    return found


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of ``day`` in the billing timezone, in UTC."""
    return datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)


def record_reading(conn: Connection, tz: ZoneInfo, service_id: str, observed_at: datetime, units: int) -> list[Change]:
    """A Get Units Now reading joins the unit history. It supersedes any earlier press of its
    day, so the history is re-derived from the snapshot before that day up to the next one."""
    observed_at = as_utc(observed_at)
    day = observed_at.astimezone(tz).date()
    conn.execute(
        text(
            "INSERT INTO units_now_readings (service_id, observed_at, observed_date, units) "
            "VALUES (:sid, :at, :day, :units)"
        ),
        {"sid": service_id, "at": observed_at, "day": day, "units": units},
    )
    return rederive_around(conn, tz, Position(day, observed_at), since=Position(day, day_start(day, tz)))


def rederive_from(conn: Connection, snapshot_date: date, tz: ZoneInfo) -> list[Change]:
    """After a snapshot date was (re)loaded, completed, quarantined, released or discarded."""
    run = get_run(conn, snapshot_date)
    position = nightly_position(snapshot_date, as_datetime(run["observed_at"]) if run else None, tz)
    found = rederive_around(conn, tz, position)
    return [c for c in found if c.effective_date == snapshot_date and c.source == NIGHTLY]


def _rederive_window(
    conn: Connection, tz: ZoneInfo, good: dict[date, Position], lower: Position | None,
    upper: Position | None,
) -> list[Change]:
    def inside(p: Position) -> bool:
        return (lower is None or p > lower) and (upper is None or p <= upper)

    nightly_dates = sorted(d for d, p in good.items() if inside(p))
    observations = [
        Observation(sid, good[as_date(d)], units, NIGHTLY)
        for d in nightly_dates
        for sid, d, units in conn.execute(
            text("SELECT service_id, snapshot_date, units FROM service_unit_counts WHERE snapshot_date = :d"),
            {"d": d},
        )
    ]
    # A day's reading is its last press: a later press the same day supersedes an earlier one,
    # even one made before that night's snapshot. It counts where it stands, if in the window.
    last_press: dict[tuple[str, date], Observation] = {}
    for sid, day, at, units in conn.execute(
        text(
            "SELECT service_id, observed_date, observed_at, units FROM units_now_readings "
            "WHERE observed_date >= :lo ORDER BY observed_at"
        ),
        {"lo": lower.day if lower else date.min},
    ):
        position = Position(as_date(day), as_utc(at))
        last_press[(sid, position.day)] = Observation(sid, position, units, READING)
    observations += [o for o in last_press.values() if inside(o.position)]

    _delete_window(conn, lower, upper, inside)
    before = _units_before(conn, tz, lower, {o.service_id for o in observations})
    changes = []
    for obs in sorted(observations, key=lambda o: (o.service_id, o.position)):
        previous = before.get(obs.service_id)
        before[obs.service_id] = obs.units
        if previous is not None and previous != obs.units:
            changes.append(
                Change(change_id(obs.service_id, obs.position.day, obs.source), obs.service_id,
                       obs.position.day, previous, obs.units, obs.source, obs.position.at)
            )
    if changes:
        conn.execute(
            text(
                "INSERT INTO unit_changes (change_id, service_id, effective_date, units_before, "
                "units_after, delta, source, detected_at) VALUES (:change_id, :service_id, "
                ":effective_date, :units_before, :units_after, :delta, :source, :detected_at)"
            ),
            [{**c.__dict__, "delta": c.delta} for c in changes],
        )
    for d in nightly_dates:  # the agents behind each nightly change, against its previous good date
        previous_date = max((x for x in good if x < d), default=None)
        if previous_date is not None:
            conn.execute(
                load_sql("sync/unit_change_agents_insert.sql"),
                {"snapshot_date": d, "previous_date": previous_date},
            )
    log.info(
        "re-derived unit changes after %s up to %s: %d changes",
        lower.day if lower else "the start", upper.day if upper else "now", len(changes),
    )
    return changes


def _delete_window(conn: Connection, lower: Position | None, upper: Position | None, inside) -> None:
    rows = conn.execute(
        text(
            "SELECT change_id, effective_date, source, detected_at FROM unit_changes "
            "WHERE source IN (:nightly, :reading) AND effective_date >= :lo"
            + (" AND effective_date <= :hi" if upper else "")
        ),
        {"nightly": NIGHTLY, "reading": READING, "lo": lower.day if lower else date.min,
         "hi": upper.day if upper else None},
    ).all()
    doomed = [
        cid for cid, day, source, detected in rows
        if (source == NIGHTLY and (lower is None or as_date(day) > lower.day))
        or (source == READING and inside(Position(as_date(day), as_utc(detected))))
    ]
    for cid in doomed:
        conn.execute(text("DELETE FROM unit_change_agents WHERE change_id = :c"), {"c": cid})
        conn.execute(text("DELETE FROM unit_changes WHERE change_id = :c"), {"c": cid})


def _units_before(
    conn: Connection, tz: ZoneInfo, lower: Position | None, service_ids: set[str]
) -> dict[str, int]:
    """Each service's units at its latest observation at or before ``lower``."""
    if lower is None or not service_ids:
        return {}
    found: dict[str, tuple[Position, int]] = {}
    for sid, day, at, units in conn.execute(
        text(
            "SELECT c.service_id, c.snapshot_date, r.observed_at, c.units FROM service_unit_counts c "
            "JOIN sync_runs r ON r.snapshot_date = c.snapshot_date AND r.status = 'complete' "
            "WHERE c.snapshot_date = (SELECT MAX(c2.snapshot_date) FROM service_unit_counts c2 "
            "  JOIN sync_runs r2 ON r2.snapshot_date = c2.snapshot_date AND r2.status = 'complete' "
            "  WHERE c2.service_id = c.service_id AND c2.snapshot_date <= :day)"
        ),
        {"day": lower.day},
    ):
        found[sid] = (nightly_position(as_date(day), as_datetime(at), tz), units)
    for sid, day, at, units in conn.execute(
        text(
            "SELECT g.service_id, g.observed_date, g.observed_at, g.units FROM units_now_readings g "
            "WHERE g.observed_at = (SELECT MAX(g2.observed_at) FROM units_now_readings g2 "
            "  WHERE g2.service_id = g.service_id AND g2.observed_date <= :day)"
        ),
        {"day": lower.day},
    ):
        position = Position(as_date(day), as_utc(at))
        if position <= lower and (sid not in found or position > found[sid][0]):
            found[sid] = (position, units)
    return {sid: units for sid, (_, units) in found.items() if sid in service_ids}


def refresh_service_units(conn: Connection, tz: ZoneInfo) -> None:
    """Set ``services.units`` of RMM services to their latest observation (snapshot or reading)."""
    far = Position(date.max, datetime.max.replace(tzinfo=UTC))
    ids = [r[0] for r in conn.execute(text("SELECT service_id FROM services WHERE units_source = 'rmm_agent_count'"))]
    latest = _units_before(conn, tz, far, set(ids))
    if latest:
        conn.execute(
            text("UPDATE services SET units = :units WHERE service_id = :sid AND units <> :units"),
            [{"sid": sid, "units": units} for sid, units in latest.items()],
        )
