"""Unit counts (SPEC 4.1): the agents each service counts on a snapshot date, and how many."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection, text

from agent_billing.sql import load_sql, sql_source
from agent_billing.sync.intervals import SERVICE_AGENTS, set_date
from agent_billing.sync.scopes import scope_problems
from agent_billing.warehouse.bulk import tune_for_bulk

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CountResult:
    snapshot_date: date
    services: int
    units: int


def count_units(conn: Connection, snapshot_date: date, landed_views: set[str] | None = None) -> CountResult:
    """Count the date (set-based SQL): the agents each service counts are merged into
    ``service_agent_history`` straight from the count's query (``sync/service_agents_counted.sql``;
    the date becomes a merged date), then the date's ``service_unit_counts`` are replaced by
    the number of agents each service has in the history on the date.

    A service whose view's members were not landed for the date (it was added after the
    extract, and landings are reused) gets no count rather than a false zero, and no agents on
    the date; so does a service whose scope points at nothing in the snapshot (SPEC 4.1: a
    mistake, not zero units; the sync reports it, see ``sync.scopes``).
    """
    params = {"snapshot_date": snapshot_date}
    tune_for_bulk(conn)
    clear_counts(conn, snapshot_date)
    uncounted = _uncounted(conn, snapshot_date, landed_views)
    conn.execute(text("DROP TABLE IF EXISTS uncounted_services"))
    conn.execute(text("CREATE TEMPORARY TABLE uncounted_services (service_id TEXT PRIMARY KEY)"))
    if uncounted:
        conn.execute(text("INSERT INTO uncounted_services (service_id) VALUES (:s)"), [{"s": s} for s in uncounted])
    set_date(conn, SERVICE_AGENTS, snapshot_date, sql_source("sync/service_agents_counted.sql"), params)
    services = conn.execute(load_sql("sync/service_unit_counts_insert.sql"), params).rowcount
    conn.execute(text("DROP TABLE uncounted_services"))
    units = conn.execute(
        text("SELECT COALESCE(SUM(units), 0) FROM service_unit_counts WHERE snapshot_date = :d"),
        {"d": snapshot_date},
    ).scalar_one()
    log.info("counted %s: %d services, %d units", snapshot_date, services, units)
    return CountResult(snapshot_date, services, int(units))


def _uncounted(conn: Connection, snapshot_date: date, landed_views: set[str] | None) -> dict[str, str]:
    """The services that get no count on the date, each with the reason (logged)."""
    uncounted: dict[str, str] = {}
    if landed_views is not None:
        for sid, view in conn.execute(
            text("SELECT service_id, vsa_view_id FROM services WHERE vsa_view_id IS NOT NULL")
        ):
            if view not in landed_views:
                uncounted[sid] = f"view {view} of service {sid} was not extracted for this date"
    for problem in scope_problems(conn, snapshot_date):
        uncounted.setdefault(problem.service_id, problem.message())
    for service_id in sorted(uncounted):
        log.warning("%s: %s; no count recorded", snapshot_date, uncounted[service_id])
    return uncounted


def clear_counts(conn: Connection, snapshot_date: date) -> None:
    """Drop the date's counts (its service agents leave the history with the date: ``forget_night``)."""
    conn.execute(text("DELETE FROM service_unit_counts WHERE snapshot_date = :d"), {"d": snapshot_date})
