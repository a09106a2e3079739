"""``contracts apply``: compute the plan, then execute it, in one transaction.

``run_contracts`` is the one code path of ``apply``, ``--plan`` and ``--check``: the plan is
computed inside the transaction, refused plans raise before anything is written, and a
preview (``dry_run``) executes the plan too and rolls back, so it meets every database rule
the real apply meets. After the plan is executed the services' scopes are checked against the
latest complete VSA snapshot (warnings; refused with ``strict``), and counted services that
start months before any night was synced are named (warnings: they are billed from their start).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, text
from sqlalchemy.dialects import postgresql, sqlite

from agent_billing.contracts.plan import KINDS, TABLES, Plan, PlanEntry, compute_plan
from agent_billing.contracts.schema import (
    ContractsDocument,
    ContractsFile,
    ContractsFileError,
    parse_contracts,
    read_contracts_file,
)
from agent_billing.settings import get_settings
from agent_billing.sync.changes import lock_unit_history, record_manual_change
from agent_billing.sync.scopes import latest_complete_snapshot, scope_problems
from agent_billing.warehouse.values import as_date

log = logging.getLogger(__name__)


def apply_contracts(
    engine: Engine,
    document: ContractsDocument | ContractsFile | Mapping[str, Any] | str | Path,
    *,
    prune_end_date: date | None = None,
    strict: bool = False,
) -> Plan:
    """Apply a contracts document in one transaction; raise ``ContractsFileError`` (nothing
    written) when the plan refuses anything, or with ``strict`` when a scope points at nothing."""
    return run_contracts(engine, document, prune_end_date=prune_end_date, strict=strict)


def plan_contracts(
    engine: Engine,
    document: ContractsDocument | ContractsFile | Mapping[str, Any] | str | Path,
    *,
    prune_end_date: date | None = None,
) -> Plan:
    """What ``apply_contracts`` would do; writes nothing. Refusals are entries of the plan."""
    return run_contracts(engine, document, prune_end_date=prune_end_date, dry_run=True)


def run_contracts(
    engine: Engine,
    document: ContractsDocument | ContractsFile | Mapping[str, Any] | str | Path,
    *,
    prune_end_date: date | None = None,
    strict: bool = False,
    dry_run: bool = False,
) -> Plan:
    doc = as_document(document)
    with engine.connect() as conn, conn.begin() as transaction:
        lock_unit_history(conn)  # before any row: a billing run shares it, then locks its contract
        plan = compute_plan(conn, doc, prune_end_date=prune_end_date)
        if plan.refused:
            if dry_run:
                transaction.rollback()
                return plan
            raise ContractsFileError(plan.refusal_message())
        execute_plan(conn, plan)
        check_scopes(conn, plan)
        check_back_billing(conn, plan)
        if strict and plan.scope_problems and not dry_run:
            raise ContractsFileError(
                f"{doc.source}: --strict: "
                + "; ".join(p.message() for p in plan.scope_problems)
                + ". Nothing was applied."
            )
        if dry_run:
            transaction.rollback()
        else:
            transaction.commit()
            log.info("contracts applied: %s", plan.summary())
    return plan


def as_document(document: ContractsDocument | ContractsFile | Mapping[str, Any] | str | Path) -> ContractsDocument:
    if isinstance(document, ContractsDocument):
        return document
    if isinstance(document, str | Path):
        return read_contracts_file(document)
    if isinstance(document, ContractsFile):
        return ContractsDocument(document)
    return ContractsDocument(parse_contracts(document))


def execute_plan(conn: Connection, plan: Plan) -> None:
    """Write a plan without refusals: upserts parent first, then the ends of absent entries."""
    assert not plan.refused, "a refused plan is never executed"
    for kind in KINDS:
        for entry in plan.of("create", kind) + plan.of("update", kind):
            _upsert(conn, entry)
            if entry.unit_change is not None:
                u = entry.unit_change
                record_manual_change(conn, entry.key, u.effective_date, u.before, u.after)
    for kind in reversed(KINDS):
        for entry in plan.of("end", kind):
            table, key = TABLES[kind]
            conn.execute(
                sa.update(sa.table(table, sa.column(key), sa.column("end_date")))
                .where(sa.column(key) == entry.key)
                .values(end_date=entry.row["end_date"])
            )


def _upsert(conn: Connection, entry: PlanEntry) -> None:
    """``INSERT … ON CONFLICT (key) DO UPDATE`` of the changed columns (all of them for a new
    row, so that a row created meanwhile ends up as the file says, locks still enforced by the
    database's triggers)."""
    table, key = TABLES[entry.kind]
    row = entry.row
    target = sa.table(table, *(sa.column(c) for c in row))
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(target).values(row)
    columns = [c.field for c in entry.changes] if entry.action == "update" else [c for c in row if c != key]
    conn.execute(insert.on_conflict_do_update(
        index_elements=[key], set_={c: insert.excluded[c] for c in columns}
    ))


def check_scopes(conn: Connection, plan: Plan) -> None:
    """Services (including those that start later) whose scope is missing from the latest
    complete snapshot; no snapshot yet → nothing to check (``plan.scopes_checked`` False)."""
    snapshot = latest_complete_snapshot(conn)
    plan.scope_snapshot = snapshot
    plan.scopes_checked = snapshot is not None
    if snapshot is not None:
        plan.scope_problems = scope_problems(conn, snapshot, active_until=date.max)


def check_back_billing(conn: Connection, plan: Plan) -> None:
    """Counted services the plan adds, or whose start it moves, to a month before the first
    night synced (before this month when none was): the first billing run bills every month
    from the start, at the units of the service's first count, which no night observed. Right
    for a contract signed before its machines were synced; wrong for a customer moved over
    from another billing system, whose past months were billed there."""
    first = conn.execute(text("SELECT MIN(snapshot_date) FROM sync_runs WHERE status = 'complete'")).scalar()
    reference = as_date(first) if first is not None else datetime.now(get_settings().tz).date()
    since = "the first night synced" if first is not None else "this month (no night synced yet)"
    for e in plan.entries:
        moved = e.action == "update" and any(c.field == "start_date" for c in e.changes)
        if e.kind != "service" or e.row.get("units_source") != "rmm_agent_count" or not (e.action == "create" or moved):
            continue
        start = as_date(e.row["start_date"])
        if start < reference.replace(day=1):
            plan.back_billing.append(
                f"{e.describe()} starts {start}, before {since} ({reference:%Y-%m}): its first billing run "
                f"bills every month from {start:%Y-%m} at the units of its first count; for a customer "
                "billed elsewhere until now, give the date billing moves here (docs/contracts.md, start_date)"
            )
