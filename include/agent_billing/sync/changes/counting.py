"""Unit counts (SPEC 4.1): the agents each service counts on a snapshot date, and how many."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection, bindparam, text

from agent_billing.sql import load_sql, sql_source
from agent_billing.sync.intervals import (
    COVERS,
    SCOPE_GROUPS,
    SERVICE_AGENTS,
    SERVICE_SCOPES,
    set_date,
)
from agent_billing.sync.scopes import scope_problems
from agent_billing.sync.snapshot_history import merge_night
from agent_billing.warehouse.bulk import tune_for_bulk

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CountResult:
    snapshot_date: date
    services: int
    units: int


def count_units(conn: Connection, snapshot_date: date, landed_views: set[str] | None = None) -> CountResult:
    """Count the date (set-based SQL): merge the night's agents and view members into their
    histories (``merge_night``), then the agents each service counts into
    ``service_agent_history`` (the date becomes a merged date), then replace the date's
    ``service_unit_counts`` by the number of agents each service has in the history on the date.

    Only the pairs whose inputs changed are compared with the runs covering the date: the pairs
    of the agents whose org, machine group, check-in state or view membership changed there
    (the merges of the night name them), and of the services whose scope or covered machine
    groups changed (``service_scope_history``, ``service_group_history``), or whose exclusion
    reads the days since check-in, which change every night. Every other pair is counted on the
    date exactly when a run covers it. Every pair is compared when many changed (the first
    night, a new contracts file: ``_many_changed``) and when the date before was counted before
    migration 0016, which kept no scopes.

    A service whose view's members were not landed for the date (it was added after the
    extract, and landings are reused) gets no count rather than a false zero, and no agents on
    the date; so does a service whose scope points at nothing in the snapshot (SPEC 4.1: a
    mistake, not zero units; the sync reports it, see ``sync.scopes``).
    """
    params = {"snapshot_date": snapshot_date}
    tune_for_bulk(conn)
    clear_counts(conn, snapshot_date)
    # A date merged before migration 0016 has no scope runs: what its services counted there is
    # not known, so a service no longer counted would keep its agents. Compare every pair then
    # (and do not collect what changed: the first night after the upgrade, or the first night).
    scopes_known = conn.execute(
        text(f"SELECT 1 FROM service_scope_history WHERE {COVERS.format(t='service_scope_history')}"),
        {"d": snapshot_date},
    ).first() is not None
    _temporary(conn, "changed_agents", "(agent_id TEXT PRIMARY KEY)")
    merge_night(conn, snapshot_date, changed_agents="changed_agents" if scopes_known else None)
    views_not_landed = _views_not_landed(conn, snapshot_date, landed_views)
    uncounted = _uncounted(conn, snapshot_date, views_not_landed)
    recounted(conn, snapshot_date, views_not_landed)
    _temporary(conn, "uncounted_services", "(service_id TEXT PRIMARY KEY)")
    if uncounted:
        conn.execute(text("INSERT INTO uncounted_services (service_id) VALUES (:s)"), [{"s": s} for s in uncounted])
    _temporary(conn, "counted_scopes", "AS " + sql_source("sync/counted_scopes.sql"), params)
    _temporary(conn, "counted_groups", "AS " + sql_source("sync/counted_groups.sql"), params)
    _temporary(conn, "changed_services", "(service_id TEXT PRIMARY KEY)")
    if conn.dialect.name == "postgresql":
        conn.execute(text("ANALYZE counted_scopes, counted_groups"))
    for history, table in ((SERVICE_SCOPES, "counted_scopes"), (SCOPE_GROUPS, "counted_groups")):
        set_date(conn, history, snapshot_date, f"SELECT {', '.join(history.columns)} FROM {table}",
                 changed_into=("changed_services", "service_id"))
    conn.execute(text(
        "INSERT INTO changed_services (service_id) SELECT service_id FROM counted_scopes "
        "WHERE exclude_offline_days IS NOT NULL AND service_id NOT IN (SELECT service_id FROM changed_services)"
    ))
    if not scopes_known or _many_changed(conn, snapshot_date):
        set_date(conn, SERVICE_AGENTS, snapshot_date, sql_source("sync/service_agents_counted.sql"), params)
    else:
        set_date(conn, SERVICE_AGENTS, snapshot_date, sql_source("sync/service_agents_changed.sql"), params,
                 only=("agent_id IN (SELECT agent_id FROM changed_agents)",
                       "service_id IN (SELECT service_id FROM changed_services)"))
    services = conn.execute(load_sql("sync/service_unit_counts_insert.sql"), params).rowcount
    for table in ("uncounted_services", "counted_scopes", "counted_groups", "changed_services", "changed_agents"):
        conn.execute(text(f"DROP TABLE {table}"))
    units = conn.execute(
        text("SELECT COALESCE(SUM(units), 0) FROM service_unit_counts WHERE snapshot_date = :d"),
        {"d": snapshot_date},
    ).scalar_one()
    log.info("counted %s: %d services, %d units", snapshot_date, services, units)
    return CountResult(snapshot_date, services, int(units))


def _temporary(conn: Connection, name: str, definition: str, params: dict | None = None) -> None:
    conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
    conn.execute(text(f"CREATE TEMPORARY TABLE {name} {definition}"), params or {})


def _many_changed(conn: Connection, snapshot_date: date) -> bool:
    """Whether the changed agents or services are so many (more than a quarter of the night's
    agents or of its counted services) that comparing every pair is the cheaper way. Services
    with ``exclude_offline_days`` are compared whole either way: they count on neither side."""
    changed_agents, changed_services, services = conn.execute(text(
        "SELECT (SELECT COUNT(*) FROM changed_agents), "
        "(SELECT COUNT(*) FROM changed_services c JOIN counted_scopes s ON s.service_id = c.service_id "
        "WHERE s.exclude_offline_days IS NULL), "
        "(SELECT COUNT(*) FROM counted_scopes WHERE exclude_offline_days IS NULL)"
    )).one()
    agents = conn.execute(
        text("SELECT COUNT(*) FROM vsa_agents WHERE snapshot_date = :d"), {"d": snapshot_date}
    ).scalar_one()
    log.info("%s: %d of %d agents and %d of %d services changed since the merged date before",
             snapshot_date, changed_agents, agents, changed_services, services)
    return 4 * changed_services > services or 4 * changed_agents > agents


def _uncounted(conn: Connection, snapshot_date: date, views_not_landed: dict[str, str]) -> dict[str, str]:
    """The services that get no count on the date, each with the reason (logged):
    ``views_not_landed`` (``_views_not_landed``) and the scopes that point at nothing."""
    uncounted = dict(views_not_landed)
    for problem in scope_problems(conn, snapshot_date):
        uncounted.setdefault(problem.service_id, problem.message())
    for service_id in sorted(uncounted):
        log.warning("%s: %s; no count recorded", snapshot_date, uncounted[service_id])
    return uncounted


def counted_views(conn: Connection, snapshot_date: date) -> list[tuple[str, str]]:
    """(service, view) of each service counted on the date that counts a view."""
    return [tuple(row) for row in conn.execute(load_sql("sync/counted_views.sql"), {"snapshot_date": snapshot_date})]


def _views_not_landed(conn: Connection, snapshot_date: date, landed_views: set[str] | None) -> dict[str, str]:
    """The services counted on the date whose view has no extract in its landing, each with the
    reason (a service not active that night needs none: nothing to warn about)."""
    if landed_views is None:
        return {}
    return {sid: f"view {view} of service {sid} was not extracted for this date"
            for sid, view in counted_views(conn, snapshot_date) if view not in landed_views}


def clear_counts(conn: Connection, snapshot_date: date) -> None:
    """Drop the date's counts (its service agents leave the history with the date: ``forget_night``)."""
    conn.execute(text("DELETE FROM service_unit_counts WHERE snapshot_date = :d"), {"d": snapshot_date})


def recounted(conn: Connection, snapshot_date: date, still_uncountable: Collection[str] = ()) -> None:
    """What ``contracts apply`` asked to recount on the date is done: it was counted again with
    the contracts as they are now (a scope that points at nothing included: the scope report
    says why it has no count), or discarded. ``still_uncountable``: services whose view the
    date's landing holds no extract of; no re-run can count them, so their nights stay until a
    person accepts them (``contracts.recount.accept_uncounted``)."""
    keep = sorted(still_uncountable)
    conn.execute(
        text("DELETE FROM nights_to_recount WHERE snapshot_date = :d"
             + (" AND service_id NOT IN :keep" if keep else ""))
        .bindparams(*([bindparam("keep", expanding=True)] if keep else [])),
        {"d": snapshot_date, **({"keep": keep} if keep else {})},
    )
