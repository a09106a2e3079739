"""Scopes that point at nothing (SPEC 4.1): a mistake, not zero units.

``scope_problems(conn, d)`` lists every active ``rmm_agent_count`` service whose account's VSA
org, machine group or view is missing from the VSA snapshot of ``d``; ``zero_count_services``
lists the services whose scope exists but counted 0 agents on ``d`` (allowed, worth a look).
Both are self-contained reads (no writes, no commit): call them inside the nightly sync's
transaction after the snapshot is loaded and counted, or from ``contracts apply`` against
``latest_complete_snapshot``. The set-based SQL lives in ``include/sql/sync/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

from sqlalchemy import Connection, text

from agent_billing.sql import load_sql
from agent_billing.sync.notify import queue_message
from agent_billing.warehouse.values import as_date

Missing = Literal["org", "machine_group", "view"]
_WHAT = {"org": "VSA org", "machine_group": "machine group", "view": "view"}


@dataclass(frozen=True)
class ScopeProblem:
    """One missing piece of one service's scope on ``snapshot_date``."""

    service_id: str
    missing: Missing
    missing_id: str
    org_id: str | None
    org_exists: bool
    org_name: str | None
    snapshot_date: date

    def message(self) -> str:
        """One line naming the service, the missing id and the org."""
        head = f"service {self.service_id}: {_WHAT[self.missing]} {self.missing_id}"
        if self.missing == "org":
            return f"{head} does not exist in the VSA snapshot of {self.snapshot_date}"
        org = (
            f"org {self.org_id} ({self.org_name or 'no name'})"
            if self.org_exists
            else f"org {self.org_id} (the org itself is missing too)"
        )
        where = "in " + org if self.missing == "machine_group" else "for " + org
        return f"{head} does not exist {where} in the VSA snapshot of {self.snapshot_date}"


@dataclass(frozen=True)
class ZeroCountService:
    """A service whose scope exists but counted 0 agents on ``snapshot_date``."""

    service_id: str
    org_id: str | None
    org_name: str | None
    snapshot_date: date

    def message(self) -> str:
        name = f", {self.org_name}" if self.org_name else ""
        return f"service {self.service_id}: 0 agents in its scope on {self.snapshot_date} (org {self.org_id}{name})"


def scope_problems(
    conn: Connection, snapshot_date: date, *, active_until: date | None = None
) -> list[ScopeProblem]:
    """Services active on ``snapshot_date`` (or at any time up to ``active_until``, e.g.
    ``date.max`` to include services that start later) whose scope is missing from the
    snapshot of ``snapshot_date``; ordered by service id, then org/machine_group/view."""
    rows = conn.execute(
        load_sql("sync/scope_problems.sql"),
        {"snapshot_date": snapshot_date, "active_until": active_until or snapshot_date},
    ).mappings()
    return [
        ScopeProblem(
            service_id=row["service_id"],
            missing=row["missing"],
            missing_id=row["missing_id"],
            org_id=row["org_id"],
            org_exists=bool(row["org_exists"]),
            org_name=row["org_name"],
            snapshot_date=snapshot_date,
        )
        for row in rows
    ]


def zero_count_services(conn: Connection, snapshot_date: date) -> list[ZeroCountService]:
    """Services counted in VSA with 0 units on ``snapshot_date`` (``service_unit_counts``)
    whose scope does exist; a scope that points at nothing is a ``scope_problems`` entry."""
    broken = {p.service_id for p in scope_problems(conn, snapshot_date)}
    rows = conn.execute(load_sql("sync/zero_count_services.sql"), {"snapshot_date": snapshot_date})
    return [
        ZeroCountService(row.service_id, row.org_id, row.org_name, snapshot_date)
        for row in rows
        if row.service_id not in broken
    ]


def latest_complete_snapshot(conn: Connection) -> date | None:
    """The latest snapshot date whose nightly sync completed (None before the first one)."""
    value = conn.execute(
        text("SELECT MAX(snapshot_date) FROM sync_runs WHERE status = 'complete'")
    ).scalar()
    return as_date(value) if value is not None else None


def report_scopes(conn: Connection, snapshot_date: date, data_team: list[str]) -> dict[str, list[str]]:
    """The nightly sync's scope report for ``snapshot_date``: every scope problem and every
    service that counted 0, as one-line messages for the sync's result and ``sync_runs``;
    and one data-team alert per problem, queued once (its message id names the service and
    the missing id, so the same problem found again on later nights alerts nobody twice)."""
    problems = scope_problems(conn, snapshot_date)
    if data_team:
        for problem in problems:
            queue_message(
                conn, f"scope:{problem.service_id}:{problem.missing}:{problem.missing_id}", "scope",
                data_team, f"[agent-billing] Service {problem.service_id} points at nothing in VSA",
                problem.message() + ".\n\nIts units are not counted while its scope is missing. "
                "Fix the contracts file (docs/contracts.md) or the VSA side, then re-run the date.\n",
            )
    return {
        "scope_problems": [p.message() for p in problems],
        "zero_count_services": [z.message() for z in zero_count_services(conn, snapshot_date)],
    }
