"""What lasts of a night: agents, view members and service scopes merged into interval history.

The load writes a night into the per-date tables ``vsa_agents`` and ``vsa_view_members``: they
are the night's staging, read by the quality gate, the count and the totals. The count
(``changes.counting``) first merges the night's agents and view members into
``vsa_agent_history`` and ``vsa_view_member_history`` (validity intervals, see
``intervals.py``), then each counted service's scope into ``service_scope_history`` and
``service_group_history``, then the agents each service counts into ``service_agent_history``
straight from its query. Together they answer "which agents did service S count on date D" for
every date kept. The volatile fields (``online``, ``last_checkin_time``, ``days_since_checkin``)
change every night for most agents and stay in staging only. Staging older than the retention
(``AGENT_BILLING_SNAPSHOT_RETENTION_DAYS`` before the latest merged date) is dropped.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

from sqlalchemy import Connection, Engine, text

from agent_billing.sync.intervals import (
    AGENTS,
    SCOPE_GROUPS,
    SERVICE_AGENTS,
    SERVICE_SCOPES,
    VIEW_MEMBERS,
    forget_date,
    forget_merged,
    set_date,
)
from agent_billing.sync.runs import lock_snapshot_date
from agent_billing.warehouse.staging import (
    STAGING_TABLES,
    drop_dates,
    in_stage,
    mark_dropped,
    mark_settled,
    settled_before,
    still_staged,
)
from agent_billing.warehouse.values import as_date

log = logging.getLogger(__name__)
# Each source has no duplicate keys, as ``set_date`` needs: a night is counted (and merged) only
# after its quality gate found its agent ids unique, and staged view members have a unique key.
SOURCES = (
    (AGENTS, "SELECT agent_id, agent_name, org_id, machine_group_id, COALESCE(online, 0) = 199 AS never_checked_in "
             "FROM vsa_agents WHERE snapshot_date = :snapshot_date AND agent_id IS NOT NULL"),
    (VIEW_MEMBERS, "SELECT view_id, agent_id FROM vsa_view_members WHERE snapshot_date = :snapshot_date "
                  "AND agent_id IS NOT NULL"),
)
# the count merges the scopes and service agents itself
HISTORIES = (AGENTS, VIEW_MEMBERS, SERVICE_SCOPES, SCOPE_GROUPS, SERVICE_AGENTS)


def merge_night(conn: Connection, snapshot_date: date, changed_agents: str | None = None) -> int:
    """Merge the night's staged agents and view members into their histories (any date, any
    order; the count, which calls this first, then merges its service agents); returns rows
    written. ``changed_agents`` (a temporary table with an ``agent_id`` column) receives every
    agent that arrives, leaves, or changes or whose view membership changes on the date."""
    collect = (changed_agents, "agent_id") if changed_agents else None
    written = sum(
        set_date(conn, history, snapshot_date, sql, {"snapshot_date": snapshot_date}, changed_into=collect)
        for history, sql in SOURCES
    )
    mark_settled(conn, snapshot_date)
    log.info("merged %s into the interval history: %d rows written", snapshot_date, written)
    return written


def forget_night(conn: Connection, snapshot_date: date) -> None:
    """A discarded night leaves the histories (only the runs that start or end on it change)."""
    if conn.execute(text("SELECT 1 FROM history_dates WHERE snapshot_date = :d"), {"d": snapshot_date}).first():
        for history in HISTORIES:
            forget_date(conn, history, snapshot_date)
        forget_merged(conn, snapshot_date)
    mark_settled(conn, snapshot_date)  # its staging will not be merged: the retention may drop it


def prune_staging(engine: Engine, snapshot_date: date, retention_days: int) -> None:
    """Drop the staging of settled dates more than ``retention_days`` before the latest merged
    date, after the night is merged. Settled (``staged_dates``): merged into the histories or
    discarded since its last load. A date still being processed (a backfill or re-run between
    its load and its count) or whose run failed keeps its staging (to be counted, or looked at)
    until it is merged or discarded.

    The dates are marked ``dropped`` first, in one transaction, and only then is their staging
    dropped: from that commit on, the gate and the count refuse them (``require_staging``), so a
    prune that dies half-way leaves dates that are refused, never a settled date with half its
    staging (the next prune drops what is left). Before marking, the prune takes the dates'
    locks, which a load holds from its start to its commit, and looks again: a date loaded since
    the prune looked is not settled any more and keeps its new staging.

    On PostgreSQL a date's staging is a partition, dropped whole (``warehouse.staging``). Each
    table's drop is its own short transaction, so it holds one table's lock at a time and can
    wait for readers of other dates, but never in a cycle with them."""
    with engine.connect() as conn:
        latest = conn.execute(text("SELECT MAX(snapshot_date) FROM history_dates")).scalar()
        if latest is None:
            return
        cutoff = as_date(latest) - timedelta(days=retention_days)
        seen = settled_before(conn, cutoff)
        seen.pop(snapshot_date, None)
    if seen:
        with engine.begin() as conn:
            gone = _hold(conn, seen, "settled", same_load=True)
            mark_dropped(conn, gone)
        if gone:
            log.info("dropping the staging of %d settled dates before %s: %s", len(gone), cutoff,
                     ", ".join(str(d) for d in sorted(gone)))
    for table in STAGING_TABLES:
        drop_marked(engine, table)


def drop_marked(engine: Engine, table: str) -> set[date]:
    """Drop one staging table's rows of the dates marked ``dropped`` (those of this prune, and
    any an earlier prune left behind), in one transaction; returns the dates dropped. A date
    loaded again since it was marked is left alone: its locks are taken and its stage read again."""
    with engine.begin() as conn:
        marked = still_staged(conn, table, "dropped")
        days = _hold(conn, marked, "dropped")
        drop_dates(conn, table, days)
    return days


def _hold(conn: Connection, seen: dict[date, int], stage: str, *, same_load: bool = False) -> set[date]:
    """Lock the dates (in order, as every run of a date takes its lock first) and return those
    still in ``stage`` (and, with ``same_load``, not loaded since ``seen``)."""
    for day in sorted(seen):
        lock_snapshot_date(conn, day)
    return in_stage(conn, seen, stage, same_load=same_load)
