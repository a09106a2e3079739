"""Unit counts (SPEC 4.1): the agents each service counts on a snapshot date, and how many."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection, text

from agent_billing.sql import load_sql
from agent_billing.sync.scopes import scope_problems
from agent_billing.warehouse.bulk import tune_for_bulk
from agent_billing.warehouse.staging import empty_date

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CountResult:
    snapshot_date: date
    services: int
    units: int
    agents_counted: int


def count_units(conn: Connection, snapshot_date: date, landed_views: set[str] | None = None) -> CountResult:
    """Replace the date's ``service_agents`` and ``service_unit_counts`` (set-based SQL).

    A service whose view's members were not landed for the date (it was added after the
    extract, and landings are reused) gets no count rather than a false zero; so does a service
    whose scope points at nothing in the snapshot (SPEC 4.1: a mistake, not zero units; the
    sync reports it, see ``sync.scopes``).
    """
    params = {"snapshot_date": snapshot_date}
    tune_for_bulk(conn)
    staged = clear_counts(conn, snapshot_date)
    agents = conn.execute(load_sql("sync/service_agents_insert.sql"), params).rowcount
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"ANALYZE {staged}"))
    services = conn.execute(load_sql("sync/service_unit_counts_insert.sql"), params).rowcount
    uncounted: dict[str, str] = {}
    if landed_views is not None:
        for sid, view in conn.execute(
            text("SELECT service_id, vsa_view_id FROM services WHERE vsa_view_id IS NOT NULL")
        ):
            if view not in landed_views:
                uncounted[sid] = f"view {view} of service {sid} was not extracted for this date"
    for problem in scope_problems(conn, snapshot_date):
        uncounted.setdefault(problem.service_id, problem.message())
    for sid, why in sorted(uncounted.items()):
        key = {"d": snapshot_date, "s": sid}
        services -= conn.execute(
            text("DELETE FROM service_unit_counts WHERE snapshot_date = :d AND service_id = :s"), key
        ).rowcount
        conn.execute(text("DELETE FROM service_agents WHERE snapshot_date = :d AND service_id = :s"), key)
        log.warning("%s: %s; no count recorded", snapshot_date, why)
    units = conn.execute(
        text("SELECT COALESCE(SUM(units), 0) FROM service_unit_counts WHERE snapshot_date = :d"),
        {"d": snapshot_date},
    ).scalar_one()
    log.info("counted %s: %d services, %d units", snapshot_date, services, units)
    return CountResult(snapshot_date, services, int(units), agents)


def clear_counts(conn: Connection, snapshot_date: date) -> str:
    """Drop the date's counts; returns the table that holds its service agents (on PostgreSQL
    the date's partition, emptied)."""
    conn.execute(text("DELETE FROM service_unit_counts WHERE snapshot_date = :d"), {"d": snapshot_date})
    return empty_date(conn, "service_agents", snapshot_date)
