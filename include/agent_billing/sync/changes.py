"""Unit counts and unit changes of a snapshot date (SPEC 4.1, 4.3).

A service's units on a date are the distinct agents in its scope (``service_agents``). A
nightly change is written when the units differ from the units just before this observation
(the previous good snapshot, or a later Get Units Now reading); its effective date is the
snapshot date. Re-running a date re-derives its changes and those of the next good snapshot,
which is the only other date whose "before" depends on it: any order of re-runs converges.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection, text

from agent_billing.sql import load_sql
from agent_billing.sync.runs import get_run, next_good, previous_good
from agent_billing.warehouse.values import as_datetime

log = logging.getLogger(__name__)
NIGHTLY = "nightly_sync"


@dataclass(frozen=True)
class CountResult:
    snapshot_date: date
    services: int
    units: int
    agents_counted: int


def count_units(conn: Connection, snapshot_date: date) -> CountResult:
    """Replace the date's ``service_agents`` and ``service_unit_counts`` (set-based SQL)."""
    params = {"snapshot_date": snapshot_date}
    clear_counts(conn, snapshot_date)
    agents = conn.execute(load_sql("sync/service_agents_insert.sql"), params).rowcount
    if conn.dialect.name == "postgresql":
        conn.execute(text("ANALYZE service_agents"))
    services = conn.execute(load_sql("sync/service_unit_counts_insert.sql"), params).rowcount
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

    @property
    def delta(self) -> int:
        return self.units_after - self.units_before


def change_id(service_id: str, effective_date: date, source: str) -> str:
    """Deterministic id: re-deriving a change gives it the same id (billing links to it)."""
    return f"{service_id}:{effective_date.isoformat()}:{source}"


def derive_changes(conn: Connection, snapshot_date: date) -> list[Change]:
    """(Re)write the nightly unit changes effective on ``snapshot_date``."""
    delete_changes(conn, snapshot_date)
    run = get_run(conn, snapshot_date)
    if run is None or run["status"] != "complete":
        return []
    previous_date, previous_observed = previous_good(conn, snapshot_date)
    observed_at = as_datetime(run["observed_at"])
    rows = conn.execute(
        load_sql("sync/unit_change_candidates.sql"),
        {
            "snapshot_date": snapshot_date,
            "previous_date": previous_date,
            "previous_observed_at": previous_observed,
            "observed_at": observed_at,
        },
    ).all()
    changes = [
        Change(change_id(sid, snapshot_date, NIGHTLY), sid, snapshot_date, before, after)
        for sid, after, before in sorted(rows)
        if before is not None and before != after
    ]
    if changes:
        conn.execute(
            text(
                "INSERT INTO unit_changes (change_id, service_id, effective_date, units_before, "
                "units_after, delta, source, detected_at) VALUES (:change_id, :service_id, "
                ":effective_date, :units_before, :units_after, :delta, :source, :detected_at)"
            ),
            [
                {**c.__dict__, "delta": c.delta, "source": NIGHTLY, "detected_at": observed_at}
                for c in changes
            ],
        )
        if previous_date is not None:
            conn.execute(
                load_sql("sync/unit_change_agents_insert.sql"),
                {"snapshot_date": snapshot_date, "previous_date": previous_date},
            )
    log.info("%s: %d unit changes against previous good snapshot %s", snapshot_date, len(changes), previous_date)
    return changes


def delete_changes(conn: Connection, snapshot_date: date) -> None:
    params = {"d": snapshot_date, "source": NIGHTLY}
    conn.execute(
        text(
            "DELETE FROM unit_change_agents WHERE change_id IN (SELECT change_id FROM unit_changes "
            "WHERE effective_date = :d AND source = :source)"
        ),
        params,
    )
    conn.execute(text("DELETE FROM unit_changes WHERE effective_date = :d AND source = :source"), params)


def rederive_from(conn: Connection, snapshot_date: date) -> list[Change]:
    """Derive the date's changes, then the next good snapshot's (whose 'before' is this date)."""
    changes = derive_changes(conn, snapshot_date)
    following = next_good(conn, snapshot_date)
    if following is not None:
        derive_changes(conn, following)
    refresh_service_units(conn)
    return changes


def refresh_service_units(conn: Connection) -> int:
    """Set ``services.units`` of RMM services to their latest observation (snapshot or reading)."""
    latest: dict[str, tuple] = {}
    snapshot_rows = conn.execute(
        text(
            "SELECT c.service_id, c.units, r.observed_at FROM service_unit_counts c "
            "JOIN sync_runs r ON r.snapshot_date = c.snapshot_date AND r.status = 'complete' "
            "WHERE c.snapshot_date = (SELECT MAX(c2.snapshot_date) FROM service_unit_counts c2 "
            "JOIN sync_runs r2 ON r2.snapshot_date = c2.snapshot_date AND r2.status = 'complete' "
            "WHERE c2.service_id = c.service_id)"
        )
    ).all()
    reading_rows = conn.execute(
        text(
            "SELECT g.service_id, g.units, g.observed_at FROM units_now_readings g "
            "WHERE g.observed_at = (SELECT MAX(g2.observed_at) FROM units_now_readings g2 "
            "WHERE g2.service_id = g.service_id)"
        )
    ).all()
    for service_id, units, observed in [*snapshot_rows, *reading_rows]:
        at = as_datetime(observed)
        if service_id not in latest or (at and latest[service_id][1] and at > latest[service_id][1]):
            latest[service_id] = (units, at)
    if latest:
        conn.execute(
            text("UPDATE services SET units = :units WHERE service_id = :sid AND units <> :units"),
            [{"sid": sid, "units": units} for sid, (units, _) in latest.items()],
        )
    return len(latest)
