"""The stored unit history (SPEC 4.3, 4.4): reads a window's observations, replaces its changes.

When an observation appears, changes or goes away (a re-run, a release, a discard, a press),
the changes between the previous good snapshot and the next one are derived again
(``history.derive_changes``): nothing else can depend on it, so any order of re-runs and
backfills converges to the same rows. Every query reads only the dates it needs (the previous
good snapshot, the window, the dates in it) through indexes on the date columns (migration
0006), so a night costs the same after a year of history as on the second night.

``insert_changes`` is the only writer of ``unit_changes``: nightly changes, Get Units Now
readings and manual changes from contracts (``record_manual_change``) all go through it, so a
change id has one author (``history.change_id``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import Connection, text

from agent_billing.sql import load_sql
from agent_billing.sync.changes.history import (
    MANUAL,
    NIGHTLY,
    READING,
    Change,
    Observation,
    Position,
    Window,
    day_start,
    derive_changes,
    last_press_per_day,
    manual_change,
    nightly_position,
    units_at,
)
from agent_billing.sync.runs import get_run
from agent_billing.warehouse.values import as_date, as_datetime, as_utc

log = logging.getLogger(__name__)

# Any bigint: the key of the PostgreSQL advisory lock that serialises unit-history updates.
UNIT_HISTORY_LOCK = 7_255_110_501
FAR = Position(date.max, datetime.max.replace(tzinfo=UTC))


def lock_unit_history(conn: Connection) -> None:
    """Serialise whoever re-derives unit changes or merges a date into the interval histories
    (backfill runs of several dates can run at once): on PostgreSQL a transaction-scoped
    advisory lock; SQLite has one writer anyway."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": UNIT_HISTORY_LOCK})


def share_unit_history(conn: Connection) -> None:
    """Read the unit history as one state for the rest of the transaction (a billing run reads
    a contract's unit changes and first observations in separate statements): wait for a writer
    holding ``lock_unit_history``, and make writers wait. PostgreSQL: the same advisory lock,
    shared. Take it before any row lock: a writer takes the lock before its rows."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": UNIT_HISTORY_LOCK})


# -- good snapshots near a position (sync_runs is keyed by date: each read is an index range)

def _good_near(conn: Connection, tz, day: date, *, before: bool, limit: int = 2) -> list[Position]:
    """Positions of the good snapshots nearest ``day`` (inclusive), walking back or forward."""
    op, order = ("<=", "DESC") if before else (">=", "ASC")
    rows = conn.execute(
        text(
            f"SELECT snapshot_date, observed_at FROM sync_runs WHERE status = 'complete' "
            f"AND snapshot_date {op} :d ORDER BY snapshot_date {order} LIMIT {limit}"
        ),
        {"d": day},
    )
    return [nightly_position(as_date(d), as_datetime(at), tz) for d, at in rows]


def latest_good_at_or_before(conn: Connection, tz, position: Position) -> Position | None:
    return next((p for p in _good_near(conn, tz, position.day, before=True) if p <= position), None)


def window_around(conn: Connection, tz, position: Position, since: Position | None = None) -> Window:
    """From the last good snapshot before ``since`` (default ``position``) to the first after
    ``position``: every change whose 'before' can depend on an observation in between."""
    start = since or position
    lower = next((p for p in _good_near(conn, tz, start.day, before=True) if p < start), None)
    upper = next((p for p in _good_near(conn, tz, position.day, before=False) if p > position), None)
    return Window(lower, _past_uncounted(conn, tz, upper))


def _past_uncounted(conn: Connection, tz, upper: Position | None) -> Position | None:
    """``upper``, or further: up to the next good count of each service that ``upper`` did not
    count (``sync/next_observed_past.sql``), whose next change the window may have moved."""
    if upper is None:
        return None
    reach, to_the_end = conn.execute(load_sql("sync/next_observed_past.sql"), {"upper": upper.day}).one()
    if to_the_end:
        return None
    if reach is None:
        return upper
    return _good_near(conn, tz, as_date(reach), before=False, limit=1)[0]


def _good_in(conn: Connection, tz, window: Window) -> list[Position]:
    rows = conn.execute(
        text(
            "SELECT snapshot_date, observed_at FROM sync_runs WHERE status = 'complete' "
            "AND snapshot_date >= :lo AND snapshot_date <= :hi ORDER BY snapshot_date"
        ),
        {"lo": window.lower.day if window.lower else date.min, "hi": window.upper.day if window.upper else date.max},
    )
    return [p for d, at in rows if (p := nightly_position(as_date(d), as_datetime(at), tz)) in window]


# -- observations

def _counts_on(conn: Connection, position: Position) -> list[Observation]:
    rows = conn.execute(
        text("SELECT service_id, units FROM service_unit_counts WHERE snapshot_date = :d"), {"d": position.day}
    )
    return [Observation(sid, position, units, NIGHTLY) for sid, units in rows]


def _readings(conn: Connection, first: date, last: date, service_id: str | None = None) -> list[Observation]:
    """Every press of the days ``first``..``last`` (whole days: the last press of a day wins)."""
    sql = "SELECT service_id, observed_date, observed_at, units FROM units_now_readings " \
          "WHERE observed_date >= :first AND observed_date <= :last"
    params = {"first": first, "last": last}
    if service_id is not None:
        sql += " AND service_id = :sid"
        params["sid"] = service_id
    return [
        Observation(sid, Position(as_date(day), as_utc(at)), units, READING)
        for sid, day, at, units in conn.execute(text(sql), params)
    ]


def units_at_position(conn: Connection, tz, position: Position | None, service_ids: Iterable[str]) -> dict[str, int]:
    """Each service's units at its latest observation at or before ``position``.

    The latest good snapshot at or before it counts nearly every service; only the readings
    since that snapshot can be later. A service it did not count (ended, or its view was not
    landed) is looked up on its own through the (service_id, snapshot_date) key.
    """
    wanted = set(service_ids)
    if position is None or not wanted:
        return {}
    latest = latest_good_at_or_before(conn, tz, position)
    counts: list[Observation] = []
    readings: list[Observation] = []
    if latest is not None:
        counts = [o for o in _counts_on(conn, latest) if o.service_id in wanted]
        readings = _readings(conn, latest.day, position.day)
    for sid in sorted(wanted - {o.service_id for o in counts}):
        counts += _service_counts_before(conn, tz, sid, position)
        since = counts[-1].position.day if counts and counts[-1].service_id == sid else date.min
        readings += _readings(conn, since, position.day, sid)
    found = units_at(counts + last_press_per_day(readings), position)
    return {sid: units for sid, units in found.items() if sid in wanted}


def _service_counts_before(conn: Connection, tz, service_id: str, position: Position) -> list[Observation]:
    """The service's latest good count at or before ``position`` (a backward walk of its key)."""
    rows = conn.execute(
        text(
            "SELECT c.snapshot_date, r.observed_at, c.units FROM service_unit_counts c "
            "JOIN sync_runs r ON r.snapshot_date = c.snapshot_date AND r.status = 'complete' "
            "WHERE c.service_id = :sid AND c.snapshot_date <= :d ORDER BY c.snapshot_date DESC LIMIT 2"
        ),
        {"sid": service_id, "d": position.day},
    )
    return [
        Observation(service_id, p, units, NIGHTLY)
        for d, at, units in rows if (p := nightly_position(as_date(d), as_datetime(at), tz)) <= position
    ][:1]


# -- the one writer of unit changes

def insert_changes(conn: Connection, changes: list[Change]) -> None:
    """Write unit changes of any source; the id is built here, from ``history.change_id``."""
    if not changes:
        return
    conn.execute(
        text(
            "INSERT INTO unit_changes (change_id, service_id, effective_date, units_before, "
            "units_after, delta, source, detected_at) VALUES (:change_id, :service_id, "
            ":effective_date, :units_before, :units_after, :delta, :source, :detected_at)"
        ),
        [
            {"change_id": c.change_id, "service_id": c.service_id, "effective_date": c.effective_date,
             "units_before": c.units_before, "units_after": c.units_after, "delta": c.delta,
             "source": c.source, "detected_at": c.detected_at}
            for c in sorted(changes, key=lambda c: c.change_id)
        ],
    )


def delete_changes(conn: Connection, change_ids: list[str]) -> None:
    if change_ids:
        params = [{"c": cid} for cid in change_ids]
        conn.execute(text("DELETE FROM unit_change_agents WHERE change_id = :c"), params)
        conn.execute(text("DELETE FROM unit_changes WHERE change_id = :c"), params)


def day_change(conn: Connection, service_id: str, day: date, source: str) -> Change | None:
    """The service's change of ``source`` effective on ``day`` (there is one at most)."""
    row = conn.execute(
        text(
            "SELECT units_before, units_after, detected_at FROM unit_changes WHERE service_id = :sid "
            "AND effective_date = :d AND source = :source"
        ),
        {"sid": service_id, "d": day, "source": source},
    ).first()
    return None if row is None else Change(service_id, day, row[0], row[1], source, as_utc(row[2]))


def record_manual_change(
    conn: Connection, service_id: str, effective_date: date, units_before: int, units_after: int,
    *, now: datetime | None = None,
) -> Change | None:
    """A manual service's units change on ``effective_date`` (contracts apply calls this).

    A second edit effective the same day replaces the first, from the first one's 'before';
    returns the change written, or None when the units end where the day started.
    """
    replaced = day_change(conn, service_id, effective_date, MANUAL)
    if replaced is not None:
        delete_changes(conn, [replaced.change_id])
    change = manual_change(service_id, effective_date, units_before, units_after, replaced, now or datetime.now(UTC))
    if change is not None:
        insert_changes(conn, [change])
    return change


# -- re-deriving a window

@dataclass(frozen=True)
class Rederived:
    """What a re-derivation found, and what it moved: the (effective date, source, service) of
    every change it wrote or removed, so that what customers were told follows (``notify.
    queue_mail_for``): a night, a release, a discard or a press can move the changes of other
    days and of the other source."""

    changes: list[Change]
    moved: frozenset[tuple[date, str, str]]


def rederive_around(
    conn: Connection, tz, position: Position, *, since: Position | None = None
) -> Rederived:
    """Re-derive every change whose 'before' can depend on an observation at ``position``
    (or on any observation from ``since`` up to it), then refresh ``services.units``."""
    lock_unit_history(conn)
    window = window_around(conn, tz, position, since)
    found = _rederive_window(conn, tz, window)
    refresh_service_units(conn, tz, window)
    return found


def record_reading(conn: Connection, tz, service_id: str, observed_at: datetime, units: int) -> Rederived:
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


def rederive_from(conn: Connection, snapshot_date: date, tz, *, through: date | None = None) -> Rederived:
    """After a snapshot date was (re)loaded, completed, quarantined, released or discarded
    (and, ``through``, the later dates whose verdict that changed): the date's own changes, and
    every change moved."""
    position = _run_position(conn, snapshot_date, tz)
    last = _run_position(conn, through, tz) if through else position
    found = rederive_around(conn, tz, last, since=position)
    own = [c for c in found.changes if c.effective_date == snapshot_date and c.source == NIGHTLY]
    return Rederived(own, found.moved)


def _run_position(conn: Connection, snapshot_date: date, tz) -> Position:
    run = get_run(conn, snapshot_date)
    return nightly_position(snapshot_date, as_datetime(run["observed_at"]) if run else None, tz)


def _rederive_window(conn: Connection, tz, window: Window) -> Rederived:
    """Derive the window's changes again and write only what differs from the stored ones.

    A row whose derivation did not move is left alone: on a re-run or a press most of the
    window's changes are the same, and rewriting them cost index writes that grew with the
    history (``unit_changes`` is keyed by service, so a night's rows land all over its
    indexes). The rows left are exactly those that deleting the window's changes and their
    agents and inserting them anew would leave.
    """
    lower, upper = window.lower, window.upper
    nightly = _good_in(conn, tz, window)
    observations = [o for p in nightly for o in _counts_on(conn, p)]
    presses = _readings(conn, lower.day if lower else date.min, upper.day if upper else date.max)
    observations += [o for o in last_press_per_day(presses) if o.position in window]

    before = units_at_position(conn, tz, lower, {o.service_id for o in observations})
    changes = derive_changes(before, observations)
    stored = _stored_window(conn, window)
    derived = {c.change_id for c in changes}
    moved = [c for c in changes if stored.get(c.change_id) != c]
    removed = [c for cid, c in stored.items() if cid not in derived]
    delete_changes(conn, [c.change_id for c in removed] + [c.change_id for c in moved if c.change_id in stored])
    insert_changes(conn, moved)
    kept = (set(stored) & derived) - {c.change_id for c in moved}
    _refresh_change_agents(conn, window, nightly, kept=kept)
    log.info(
        "re-derived unit changes after %s up to %s: %d changes (%d written, %d removed)",
        lower.day if lower else "the start", upper.day if upper else "now", len(changes), len(moved),
        len(set(stored) - derived),
    )
    return Rederived(changes, frozenset((c.effective_date, c.source, c.service_id) for c in (*moved, *removed)))


def _stored_window(conn: Connection, window: Window) -> dict[str, Change]:
    """The stored changes a derivation of ``window`` replaces: nightly ones effective after its
    lower bound's date, readings inside it (manual changes are never derived). Of the lower
    bound's own date only the readings are read, through the (effective_date, source) index:
    its nightly changes, as many as a night's, are not the window's."""
    lower, upper = window.lower, window.upper
    columns = "SELECT service_id, effective_date, units_before, units_after, source, detected_at FROM unit_changes "
    params = {"nightly": NIGHTLY, "reading": READING, "hi": upper.day if upper else date.max}
    if lower is None:
        rows = conn.execute(
            text(columns + "WHERE effective_date <= :hi AND source IN (:nightly, :reading)"), params
        ).all()
    else:
        params["lo"] = lower.day
        rows = conn.execute(
            text(columns + "WHERE effective_date > :lo AND effective_date <= :hi AND source IN (:nightly, :reading)"),
            params,
        ).all()
        rows += conn.execute(text(columns + "WHERE effective_date = :lo AND source = :reading"), params).all()
    found = {}
    for sid, day, units_before, units_after, source, detected in rows:
        change = Change(sid, as_date(day), units_before, units_after, source, as_utc(detected))
        if source == NIGHTLY or Position(change.effective_date, change.detected_at) in window:
            found[change.change_id] = change
    return found


def _refresh_change_agents(conn: Connection, window: Window, nightly: list[Position], kept: set[str]) -> None:
    """The agents behind each nightly change of the window, against the good snapshot before
    it. Changes written anew have none yet; a kept change's agents are compared with what the
    interval history says now (a re-run may have moved agents without moving the count) and
    only the difference is written."""
    lower = window.lower
    previous = [lower.day if lower else None] + [p.day for p in nightly]
    wanted: set[tuple] = set()
    for p, previous_date in zip(nightly, previous, strict=False):
        if previous_date is not None:
            wanted.update(_agents_behind(conn, p.day, previous_date))
    have: set[tuple] = set()
    if kept:
        # The window's nightly changes: effective after its lower bound's date, up to its upper one.
        sql = ("SELECT a.change_id, a.agent_id, a.agent_name, a.event FROM unit_change_agents a "
               "JOIN unit_changes uc ON uc.change_id = a.change_id "
               "WHERE uc.effective_date <= :hi AND uc.source = :nightly")
        params = {"nightly": NIGHTLY, "hi": window.upper.day if window.upper else date.max}
        if lower is not None:
            sql += " AND uc.effective_date > :lo"
            params["lo"] = lower.day
        rows = conn.execute(text(sql), params)
        have = {tuple(r) for r in rows if r[0] in kept}
    gone = have - wanted
    if gone:
        conn.execute(
            text("DELETE FROM unit_change_agents WHERE change_id = :c AND agent_id = :a"),
            [{"c": c, "a": a} for c, a, _, _ in gone],
        )
    new = sorted(wanted - have, key=lambda row: (row[0], row[1]))
    if new:
        conn.execute(
            text(
                "INSERT INTO unit_change_agents (change_id, agent_id, agent_name, event) "
                "VALUES (:change_id, :agent_id, :agent_name, :event)"
            ),
            [dict(zip(("change_id", "agent_id", "agent_name", "event"), row, strict=True)) for row in new],
        )


def _agents_behind(conn: Connection, night: date, previous_date: date) -> set[tuple]:
    """Rows of ``unit_change_agents`` for the night's nightly changes: the movement since the
    good night before, or, for a service that night did not count, since the service's own
    previous good count (``sync/counted_before.sql``), the count its change starts from."""
    def agents_since(since: date) -> set[tuple]:
        sql = load_sql("sync/unit_change_agents.sql")
        return {tuple(r) for r in conn.execute(sql, {"snapshot_date": night, "previous_date": since})}

    def service_of(row: tuple) -> str:
        return row[0].rsplit(":", 2)[0]  # change ids are service:date:source

    rows = agents_since(previous_date)
    missed = {sid: as_date(day) for sid, day in conn.execute(
        load_sql("sync/counted_before.sql"), {"snapshot_date": night, "previous_date": previous_date})
        if day is not None}
    if missed:
        rows = {r for r in rows if service_of(r) not in missed}
        for since in set(missed.values()):
            rows |= {r for r in agents_since(since) if missed.get(service_of(r)) == since}
    return rows


def refresh_service_units(conn: Connection, tz, window: Window | None = None) -> None:
    """Set ``services.units`` of RMM services to their latest observation (snapshot or reading),
    0 without any.

    With a ``window``, only the services active during it: no other service has an
    observation in it, so no other service's latest observation can have moved.
    """
    sql = "SELECT service_id, units FROM services WHERE units_source = 'rmm_agent_count'"
    params = {}
    if window is not None:
        sql += " AND start_date <= :hi AND (end_date IS NULL OR end_date >= :lo)"
        params = {"lo": window.lower.day if window.lower else date.min,
                  "hi": window.upper.day if window.upper else date.max}
    current = dict(conn.execute(text(sql), params).all())
    # A service no longer observed at all (its only counts were on a night now held or
    # discarded) is back at the default of a service never observed.
    latest = dict.fromkeys(current, 0) | units_at_position(conn, tz, FAR, current)
    stale = [{"sid": sid, "units": units} for sid, units in sorted(latest.items()) if current[sid] != units]
    if stale:
        conn.execute(text("UPDATE services SET units = :units WHERE service_id = :sid"), stale)
