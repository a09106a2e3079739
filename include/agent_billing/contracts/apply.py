"""``contracts apply``: compute the plan, then execute it, in one transaction.

``run_contracts`` is the one code path of ``apply``, ``--plan`` and ``--check``: the plan is
computed inside the transaction, refused plans raise before anything is written, and a
preview (``dry_run``) executes the plan too and rolls back, so it meets every database rule
the real apply meets. After the plan is executed the services' scopes are checked against the
latest complete VSA snapshot (warnings; refused with ``strict``), services that start
months before any night was synced are named (warnings: they are billed from their start),
and so are the synced nights the plan made a counted service countable on, which are recorded
in ``nights_to_recount`` until they are re-run (no invoice of the contract is posted till then).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, text
from sqlalchemy.dialects import postgresql, sqlite

from agent_billing.billing.calendar import month_start, next_month
from agent_billing.contracts.edits import record_edits
from agent_billing.contracts.plan import KINDS, TABLES, Plan, PlanEntry, compute_plan
from agent_billing.contracts.recount import record_nights_to_recount, recountable
from agent_billing.contracts.schema import (
    ContractsDocument,
    ContractsFile,
    ContractsFileError,
    parse_contracts,
    read_contracts_file,
)
from agent_billing.settings import get_settings
from agent_billing.sql import sql_source
from agent_billing.sync.changes import lock_unit_history, record_manual_change
from agent_billing.sync.dates import date_runs
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
        today = datetime.now(get_settings().tz).date()
        uncounted = uncounted_nights(conn, touched_services(conn, plan), today)
        invoiced_before = _invoiced_months(conn)  # a start moved earlier reaches months never invoiced
        execute_plan(conn, plan)
        check_scopes(conn, plan)
        check_back_billing(conn, plan)
        after = _invoiced_months(conn)  # a start moved later leaves out months invoiced before it
        invoiced = {c: sorted(set(after.get(c, ())) | set(invoiced_before.get(c, ())))
                    for c in after.keys() | invoiced_before.keys()}  # both checks: what a change from today leaves alone
        said = _InvoicedMonths(invoiced_before)
        check_backdated_units(plan, invoiced, today, said)
        check_invoiced_periods(conn, plan, invoiced, today, said)
        check_uncounted_nights(conn, plan, uncounted, today)
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
    """Write a plan without refusals: upserts parent first, then the ends of absent entries,
    then what it changed to ``contract_edits``."""
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
    record_edits(conn, plan)


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
    """Services the plan adds, or whose start it moves, to a month before the first night
    synced (before this month when none was): the first billing run bills every month from the
    start, a counted service at the units of its first count, which no night observed. Right
    for a contract signed before its machines were synced; wrong for a customer moved over
    from another billing system, whose past months were billed there."""
    first = conn.execute(text("SELECT MIN(snapshot_date) FROM sync_runs WHERE status = 'complete'")).scalar()
    reference = as_date(first) if first is not None else datetime.now(get_settings().tz).date()
    since = "the first night synced" if first is not None else "this month (no night synced yet)"
    starting: dict[tuple[date, bool], list[str]] = {}
    for e in plan.entries:
        moved = e.action == "update" and any(c.field == "start_date" for c in e.changes)
        if e.kind != "service" or not (e.action == "create" or moved):
            continue
        contract_start = conn.execute(text("SELECT start_date FROM contracts WHERE contract_id = :c"),
                                      {"c": e.row["contract_id"]}).scalar()
        start = max(as_date(e.row["start_date"]), as_date(contract_start))  # billing starts with both
        if start < reference.replace(day=1):
            counted = e.row.get("units_source") == "rmm_agent_count"
            starting.setdefault((start, counted), []).append(e.describe())
    for (start, counted), services in sorted(starting.items()):  # one warning per start: a first file has dozens
        who, its = _some_services([x.removeprefix("service ") for x in services]), "its" if len(services) == 1 else "their"
        units = f"the units of {its} first count" if counted else f"{its} units in this file"
        plan.back_billing.append(
            f"{who} start{'s' if len(services) == 1 else ''} {start}, before {since} ({reference:%Y-%m}): {its} first "
            f"billing run bills every month from {start:%Y-%m} at {units}; for a customer "
            "billed elsewhere until now, give the date billing moves here (docs/contracts.md, start_date)"
        )


class _InvoicedMonths:
    """Says past months as invoiced or not: ``_invoiced_months`` after the plan counts a month a
    contract's start moved back into as invoiced (its next invoice bills it), though no invoice
    billed it yet (``before``: ``_invoiced_months`` before the plan)."""

    def __init__(self, before: dict[str, list[date]]) -> None:
        self.before = {contract_id: set(months) for contract_id, months in before.items()}

    def __call__(self, contract_id: str, months: set[date]) -> str:
        billed = months & self.before.get(contract_id, set())
        parts = [f"months already invoiced ({_months(billed)})" if billed else "",
                 f"months before the contract's first invoiced month ({_months(months - billed)})"
                 if months - billed else ""]
        return "in " + " and ".join(p for p in parts if p)


def check_invoiced_periods(conn: Connection, plan: Plan, invoiced: dict[str, list[date]], today: date,
                           said: _InvoicedMonths) -> None:
    """Services and contracts the plan adds, or whose dates it moves, so that days before today
    of months already invoiced start or stop being billed: the next invoice bills or credits
    them. Right for a change agreed late; a surprise on a customer's invoice when the dates
    were meant from today. Billing counts a service's days within its contract's: a service's
    own move is judged within its contract's dates before the plan, a contract's within its
    services' dates after it (the two add up to the whole move, each told once). ``invoiced``:
    ``_invoiced_months``."""
    if not invoiced:  # a first apply: nothing to reach back into
        return
    after = {c: (as_date(s), _end(e)) for c, s, e in conn.execute(
        text("SELECT contract_id, start_date, end_date FROM contracts"))}
    services: dict[str, tuple[str, tuple[date, date]]] = {
        service_id: (contract_id, (as_date(s), _end(e))) for service_id, contract_id, s, e in conn.execute(
            text("SELECT service_id, contract_id, start_date, end_date FROM services"))}
    before = dict(after)
    for e in plan.entries:
        if e.kind == "contract" and e.action != "create" and (moved := _moved_dates(e)):
            before[e.key] = _dates_before(after[e.key], moved)
    for e in plan.entries:
        moved = _moved_dates(e)
        if e.kind == "service" and (e.action == "create" or moved):
            contract_id, now = services[e.key]
            was = None if e.action == "create" else _dates_before(now, moved)
            within = before[contract_id]
            pairs = [(e.key, _within(was, within), _within(now, within))]
        elif e.kind == "contract" and e.action != "create" and moved:
            contract_id = e.key
            pairs = [(service_id, _within(s, before[e.key]), _within(s, after[e.key]))
                     for service_id, (owner, s) in services.items() if owner == e.key]
        else:
            continue
        added, removed = set(), set()  # months
        billed, credited = set(), set()  # services
        for days in _past_days(invoiced.get(contract_id, ()), today):
            for service_id, was, now in pairs:
                if not _covers(_within(was, days), _within(now, days)):
                    added.add(days[0])
                    billed.add(service_id)
                if not _covers(_within(now, days), _within(was, days)):
                    removed.add(days[0])
                    credited.add(service_id)
        if added or removed:
            what = f"starts {e.row['start_date']}" if e.action == "create" else ", ".join(map(str, moved.values()))
            if e.kind == "contract":  # whose days: a move of both ends may bill some services and credit others
                does = " and ".join(f"{verb} those days of {_some_services(sorted(services))}"
                                    for verb, services in (("bills", billed), ("credits", credited)) if services)
            else:
                does = ("bills and credits" if added and removed else "bills" if added else "credits") + " those days"
            plan.backdated.append(
                f"{e.describe()}: {what}, {said(contract_id, added | removed)}: the next "
                f"invoice {does}; for a change from today, give today's date")


def check_backdated_units(plan: Plan, invoiced: dict[str, list[date]], today: date, said: _InvoicedMonths) -> None:
    """Manual unit changes effective before today in months already invoiced: the next invoice
    corrects them. Right for a change agreed late; wrong for a units_effective_date left in the
    file from an earlier edit (the example file has one), which re-bills months the customer
    paid. ``invoiced``: ``_invoiced_months``."""
    for e in plan.entries:
        change = e.unit_change
        if change is None or (change.records is None and change.recorded is None):
            continue
        months = {days[0] for days in _past_days(invoiced.get(e.row["contract_id"], ()), today)
                  if days[1] >= change.effective_date}
        if not months:
            continue
        if change.records is None:  # the edit takes back a change recorded that day, billed since
            before, after = change.recorded
            what = f"the change of {change.effective_date} recorded earlier (units {before} → {after}) is cancelled"
        else:
            before, after = change.records
            what = f"units {before} → {after} take effect {change.effective_date}"
        plan.backdated.append(
            f"{e.describe()}: {what}, {said(e.row['contract_id'], months)}: the next invoice corrects "
            "them; for a change from today, give today's date as units_effective_date (or leave it out)"
        )


def _invoiced_months(conn: Connection) -> dict[str, list[date]]:
    """Each invoiced contract's months from its start to its latest invoice month: an invoice
    bills its month and every earlier one not invoiced yet (a first invoice, a review invoice
    posted late), so a change in any of them goes on the next invoice."""
    invoiced: dict[str, list[date]] = {}
    for contract_id, start, last in conn.execute(text(
            "SELECT c.contract_id, c.start_date, MAX(i.invoice_month) FROM contracts c "
            "JOIN invoices i ON i.contract_id = c.contract_id GROUP BY c.contract_id, c.start_date")):
        month, months = month_start(as_date(start)), []
        while month <= as_date(last):
            months.append(month)
            month = next_month(month)
        invoiced[contract_id] = months
    return invoiced


def _past_days(months: Iterable[date], today: date) -> Iterator[tuple[date, date]]:
    """The days before ``today`` of each of ``months``, as (first, last): what a change from
    today leaves as billed."""
    for month in sorted(months):
        if month < today:
            yield month, min(next_month(month) - timedelta(days=1), today - timedelta(days=1))


def _moved_dates(e: PlanEntry) -> dict[str, Any]:
    return {c.field: c for c in e.changes if c.field in ("start_date", "end_date")}


def _dates_before(now: tuple[date, date], moved: dict[str, Any]) -> tuple[date, date]:
    """A (start, end) period as it was before the plan moved the dates in ``moved``."""
    start = as_date(moved["start_date"].old) if "start_date" in moved else now[0]
    end = _end(moved["end_date"].old) if "end_date" in moved else now[1]
    return start, end


def _end(value) -> date:
    """An end date, open-ended (NULL) as the last date there is."""
    return as_date(value) if value is not None else date.max


def _within(period: tuple[date, date] | None, days: tuple[date, date]) -> tuple[date, date] | None:
    """The days of ``days`` within ``period`` (None: no day)."""
    if period is None or period[0] > days[1] or period[1] < days[0]:
        return None
    return max(period[0], days[0]), min(period[1], days[1])


def _covers(days: tuple[date, date] | None, others: tuple[date, date] | None) -> bool:
    """Whether the days ``days`` hold every day of ``others``."""
    return others is None or (days is not None and days[0] <= others[0] and others[1] <= days[1])


SERVICES_NAMED = 5  # the services a warning names before "and N more"


def _some_services(services: list[str]) -> str:
    """``service X``, or ``services X, Y and N more``, in the order given."""
    named = services[:SERVICES_NAMED]
    more = f" and {len(services) - len(named)} more" if len(services) > len(named) else ""
    return f"service{'s' if len(services) > 1 else ''} {', '.join(named)}{more}"


def _months(months: set[date]) -> str:
    return ", ".join(f"{m:%Y-%m}" for m in sorted(months))


def uncounted_nights(conn: Connection, services: list[str], today: date) -> set[tuple[str, str | None, date]]:
    """(service, its view, night): the counted nights up to ``today`` (today's for a service
    active before it) on which each of ``services`` was to be counted and has no count
    (``contracts/uncounted_nights.sql``)."""
    if not services:
        return set()
    rule = sql_source("sync/agent_counted_services.sql").replace(":snapshot_date", "r.snapshot_date")
    query = text(sql_source(UNCOUNTED_NIGHTS).replace("/*counted_services_of_the_night*/", rule))
    rows = conn.execute(query.bindparams(sa.bindparam("services", expanding=True)),
                        {"services": services, "today": today})
    return {(service, view, as_date(night)) for service, view, night in rows}


UNCOUNTED_NIGHTS = "contracts/uncounted_nights.sql"


def touched_services(conn: Connection, plan: Plan) -> list[str]:
    """The services a plan adds, changes or ends, and those of the contracts it adds, changes or
    ends (an end written by ``--prune`` undoes a change as an edited date does)."""
    writes = ("create", "update", "end")
    services = {e.key for e in plan.entries if e.kind == "service" and e.action in writes}
    contracts = [e.key for e in plan.entries if e.kind == "contract" and e.action in writes]
    if contracts:
        services |= set(conn.execute(
            text("SELECT service_id FROM services WHERE contract_id IN :c").bindparams(
                sa.bindparam("c", expanding=True)), {"c": contracts}).scalars())
    return sorted(services)


def check_uncounted_nights(conn: Connection, plan: Plan, before: set[tuple[str, str | None, date]],
                           today: date) -> None:
    """Warn of the synced nights on which the plan made a counted service countable (a service
    or its contract starting earlier or ending later) without a count, and record them in
    ``nights_to_recount``: until they are re-run (the night's count deletes them), or accepted
    by a person where no re-run can count them (their landing gone, or without the service's
    view), no invoice of the service's contract is posted (``billing.post``), which would bill
    those days at the units of another night. Today's night, synced before the
    apply, is named for a service active before today (its change of today would be found a
    night late), not for one starting today (first counted by the next night, as any new one).
    ``before``: ``uncounted_nights`` before the plan was written."""
    touched = touched_services(conn, plan)
    after = uncounted_nights(conn, touched, today)
    settings = get_settings()
    entries = {e.key: e for e in plan.entries if e.kind == "service"}
    by_service: dict[tuple[str, str | None], list[date]] = {}
    for service, view, night in sorted(after - before):
        by_service.setdefault((service, view), []).append(night)
    recount = []
    raw_here = settings.raw_path.is_dir()
    for (service, view), nights in by_service.items():
        lost = [d for d in nights if not recountable(settings.raw_path, d, view)] if raw_here else []
        recount += [{"service_id": service, "snapshot_date": d} for d in nights]  # the lost too: a person accepts them
        what = entries[service].describe() if service in entries else f"service {service}"
        warning = f"{what} is now active on {len(nights)} synced night(s) that did not count it ({date_runs(nights)})"
        if len(lost) < len(nights):
            warning += (": re-run them (agent-billing sync --date D for each, or an Airflow backfill of "
                        "vsa_asset_sync; docs/runbook.md, 'Fix a wrong contract'): until then no invoice "
                        "of its contract is posted, as it would bill those days at the units of another night")
        if not raw_here:
            warning += (f" (the raw folder {settings.raw_path} is not on this machine, AGENT_BILLING_RAW_PATH: "
                        "whether their landings are kept was not checked)")
        if lost:
            warning += (f"; {'all' if len(lost) == len(nights) else len(lost)} of them cannot be recounted "
                        f"({date_runs(lost)}: their landing is gone"
                        + (f" or holds no extract of view {view}, which no active service used that night" if view else "")
                        + "): billed, those days would be at the units of another night, so no invoice of its "
                        "contract is posted until a person accepts them (agent-billing snapshots accept-uncounted "
                        f"{lost[0]}" + (f" --through {lost[-1]}" if len(lost) > 1 else "") + f" --service {service})")
        plan.uncounted.append(warning)
    record_nights_to_recount(conn, touched, {(service, night) for service, _, night in after}, recount)
