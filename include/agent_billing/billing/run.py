"""A billing run: for each contract, in its own transaction, expected − posted ⇒ lines.

A run beyond the billing horizon is refused before anything is read (``horizon``); a
contract that fails is rolled back, listed and alerted while the others are billed. On
PostgreSQL two contracts are billed at a time (``WORKERS``), each in its own transaction.

If the contract posts automatically and its invoice month (the latest month whose invoice
date is on or before ``as_of``) has no invoice yet, nor any later month, the lines become
that month's invoice. Otherwise they replace the contract's pending lines (``billing_review``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import partial

from sqlalchemy import Connection, Engine

from agent_billing.billing import settled, store
from agent_billing.billing.calendar import billing_month
from agent_billing.billing.expected import ExpectedLedger
from agent_billing.billing.horizon import check_horizon
from agent_billing.billing.model import Contract, Line, Service
from agent_billing.billing.post import (
    LEFT_OUT_OF_A_RUN,
    Invoice,
    close_month,
    invoice_id,
    left_out_in_words,
)
from agent_billing.billing.reconcile import PENDING, PostedLedger, reconcile
from agent_billing.errors import UserError
from agent_billing.settings import get_settings
from agent_billing.sync.notify import queue_message
from agent_billing.warehouse.errors import one_line, permission_denied, transient_database_error

log = logging.getLogger(__name__)

WORKERS = 2
"""Contracts billed at a time on PostgreSQL, each on its own connection and in its own
transaction: while one contract's ledgers are computed in Python, the server reads or writes
another's (about as much time each on the nightly run). SQLite bills one at a time: it has a
single writer."""


@dataclass(frozen=True, slots=True)
class ContractResult:
    contract_id: str
    posting: str
    currency: str
    invoice: Invoice | None  # posted by this run
    pending_lines: int
    pending_total: Decimal
    pending_as_of: date  # the date the pending lines were computed as of
    nights_left_out: tuple[tuple[date, str], ...] = ()  # by a posted review invoice: (night, status)


@dataclass(frozen=True, slots=True)
class FailedContract:
    contract_id: str
    error: str  # one line: the exception's type and first line, no traceback
    transient: bool = False  # the database's passing trouble: the same run may succeed later


class BillingRunFailed(UserError):
    """Some contracts failed; every other contract was billed (exit code 1: a failed run).
    ``transient`` when every failure was the database's passing trouble (a lost connection, a
    deadlock, a lock timeout, a race with another run): a retry of the run may succeed, and
    billing is idempotent, so Airflow retries it. Any other failure fails the run at once."""

    exit_code = 1

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def failure_of(summaries: Sequence[BillingSummary]) -> BillingRunFailed | None:
    """One ``BillingRunFailed`` for the failed contracts of several dates' runs, if any."""
    failing = [s for s in summaries if s.failed]
    if not failing:
        return None
    failures = [f for s in failing for f in s.failed]
    transient = all(f.transient for f in failures)
    billed = sum(len(s.contracts) for s in failing)
    dry_run = any(s.dry_run for s in failing)
    others = ("no other contract" if not billed else f"the other {billed}") + (
        " computed (dry run: nothing written)" if dry_run else " billed")
    if len(failing) == 1:
        names = "; ".join(f"{f.contract_id} ({f.error})" for f in failing[0].failed)
        return BillingRunFailed(
            f"billing as of {failing[0].as_of} failed for {len(failures)} contract(s), "
            f"{others}: {names}", transient=transient,
        )
    names = "; ".join(f"{s.as_of}: {f.contract_id} ({f.error})" for s in failing for f in s.failed)
    return BillingRunFailed(
        f"billing failed for {len(failures)} contract run(s) on {len(failing)} date(s), "
        f"{others}: {names}", transient=transient,
    )


@dataclass(frozen=True, slots=True)
class BillingSummary:
    as_of: date
    contracts: tuple[ContractResult, ...]
    failed: tuple[FailedContract, ...] = ()
    dry_run: bool = False
    #: the nights through ``as_of`` (from the first start of the contracts billed) that no
    #: billing run reads, quarantined or failed: (night, status); what they change comes once decided
    nights_left_out: tuple[tuple[date, str], ...] = ()

    @property
    def invoices_posted(self) -> int:
        return sum(1 for c in self.contracts if c.invoice)

    @property
    def lines_posted(self) -> int:
        return sum(c.invoice.lines for c in self.contracts if c.invoice)

    @property
    def pending_lines(self) -> int:
        return sum(c.pending_lines for c in self.contracts)

    def pending_words(self) -> str:
        """The pending lines in words: those a person reviews (review contracts) apart from
        those that wait for the next invoice date (automatic contracts)."""
        review = sum(c.pending_lines for c in self.contracts if c.posting == "review")
        return (f"{review} line(s) pending review, "
                f"{self.pending_lines - review} waiting for the next invoice date")

    def to_xcom(self) -> dict:
        """The run's result as JSON-safe values (the DAG's XCom)."""
        return {
            "as_of": self.as_of.isoformat(),
            "contracts": len(self.contracts),
            "invoices_posted": self.invoices_posted,
            "lines_posted": self.lines_posted,
            "pending_lines": self.pending_lines,
            "failed": [{"contract_id": f.contract_id, "error": f.error} for f in self.failed],
        }

    def raise_for_failures(self) -> None:
        """Raise ``BillingRunFailed`` naming the failed contracts, if any."""
        if failure := failure_of([self]):
            raise failure


def run_billing(
    engine: Engine,
    as_of: date,
    *,
    contract_ids: list[str] | None = None,
    today: date | None = None,
    dry_run: bool = False,
) -> BillingSummary:
    """Bill every contract (or ``contract_ids``) as of ``as_of``; idempotent.

    Refused as a whole beyond the billing horizon (``BillingHorizonError``). Each contract is
    billed in its own transaction; one that fails is listed in ``BillingSummary.failed`` and
    alerted to the data team, and the run carries on (``raise_for_failures`` then fails it).
    ``dry_run`` runs every contract's real transaction and rolls it back: nothing is written.
    """
    with engine.connect() as conn:
        check_horizon(conn, as_of, today)
        known = store.contract_ids(conn)
        stale = settled.read_stale(conn)
        first = store.first_contract_start(conn) if contract_ids is None else min(
            (store.find_contract(conn, c).start_date for c in set(contract_ids) & set(known)), default=None)
        left_out = store.nights_not_counted(conn, first, as_of) if first else {}
    if contract_ids is not None:
        unknown = sorted(set(contract_ids) - set(known))
        if unknown:
            raise UserError(f"unknown contract(s): {', '.join(unknown)}")
        known = [c for c in known if c in set(contract_ids)]
    log.info("billing %d contract(s) as of %s%s", len(known), as_of, " (dry run)" if dry_run else "")
    step = max(1, len(known) // 10)
    results, failed = [], []
    attempt = partial(_attempt, engine, as_of, dry_run, stale)
    workers = WORKERS if engine.dialect.name == "postgresql" and len(known) > 1 else 1
    with ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(ThreadPoolExecutor(workers, thread_name_prefix="billing"))
            stack.callback(pool.shutdown, cancel_futures=True)  # runs first: on an error too
            outcomes = pool.map(attempt, known)
        else:
            outcomes = map(attempt, known)
        for n, (contract_id, outcome) in enumerate(zip(known, outcomes, strict=True), 1):
            if isinstance(outcome, ContractResult):
                results.append(outcome)
            else:
                failure = FailedContract(contract_id, one_line(outcome), transient_database_error(outcome))
                log.error("billing contract %s as of %s failed: %s", contract_id, as_of, failure.error)
                log.debug("traceback of contract %s", contract_id, exc_info=outcome)
                failed.append(failure)
                if not dry_run:
                    _alert_failure(engine, as_of, failure)
            if n % step == 0 or n == len(known):
                log.info("billed %d/%d contracts", n, len(known))
    summary = BillingSummary(as_of, tuple(results), tuple(failed), dry_run, tuple(left_out.items()))
    if left_out:
        log.warning("billing as of %s: not counted, %s", as_of, left_out_in_words(left_out, decided=LEFT_OUT_OF_A_RUN))
    if summary.invoices_posted and not dry_run and engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(store.statement("analyze_ledger"))
    log.info(
        "billing as of %s%s: %d invoice(s) with %d line(s) posted, %s, %d contract(s) failed",
        as_of, " (dry run, rolled back)" if dry_run else "", summary.invoices_posted,
        summary.lines_posted, summary.pending_words(), len(failed),
    )
    return summary


@dataclass(frozen=True, slots=True)
class ContractPlan:
    """What a run as of a date does for one contract: post ``lines`` as the invoice of
    ``month`` (``due``), or keep them pending as of ``lines_as_of``; ``start`` says which
    months were walked. ``walked``: the services whose lines ``lines`` are, when the pending
    lines of the others hold (``settled.Start.kept_as_of``); None: every service's."""

    contract: Contract
    due: bool
    month: date | None
    lines_as_of: date
    lines: list[Line]
    start: settled.Start
    walked: frozenset[str] | None = None


def plan_contract(
    conn: Connection, contract: Contract, as_of: date, *, walk_all: bool = False,
    stale: settled.StaleRead | None = None, keep_pending: bool = False,
) -> ContractPlan:
    """The reconciliation of one contract as of ``as_of``, in the caller's transaction: from
    the months its last run left unsettled, or (``walk_all``) its whole ledger. ``stale``: the
    run's read of the stale rows (``settled.read_stale``; None: the contract's are read now).
    ``keep_pending``: compute only the lines of the services whose pending lines may have
    changed (``ContractPlan.walked``), for a run that writes them and keeps the others."""
    state = store.load_state(conn, contract.contract_id)
    month = billing_month(as_of, contract.billing_day, contract.start_date)
    due = (
        contract.posting == "automatic"
        and month is not None
        and (state.last_invoice_month is None or month > state.last_invoice_month)
    )
    if due:
        lines_as_of, target = as_of, invoice_id(contract.contract_id, month)
    else:
        # Pending lines never go back in time: a backfill run for an old date refreshes
        # the review as of the latest date the contract was billed or reviewed at.
        lines_as_of = max(as_of, billed_as_of(state) or as_of)
        target = PENDING
    terms = store.service_terms(conn, contract, lines_as_of)
    if walk_all:
        begin = settled.whole(contract, terms)
    else:
        kept = state if keep_pending and not due else None
        begin = settled.start(conn, contract, lines_as_of, terms, stale, kept)
    lines, walked = reconcile_contract(conn, contract, lines_as_of, target, terms, begin)
    return ContractPlan(contract, due, month, lines_as_of, lines, begin, walked)


def billed_as_of(state: store.ContractState) -> date | None:
    """The latest date the contract was billed or reviewed as of: its lines are never computed
    as of an earlier one."""
    return max((d for d in (state.last_invoice_as_of, state.pending_as_of) if d is not None), default=None)


def plan_lines(conn: Connection, contract: Contract, as_of: date) -> list[Line]:
    """The lines a run as of ``as_of`` computes for the contract (its pending lines, when the
    run kept them pending), in the caller's transaction."""
    return plan_contract(conn, contract, as_of).lines


def bill_contract(
    engine: Engine, contract_id: str, as_of: date, *, dry_run: bool = False,
    stale: settled.StaleRead | None = None,
) -> ContractResult:
    """Bill one contract as of ``as_of`` in one transaction (its invoice or its pending lines);
    with ``dry_run`` the same transaction is rolled back. ``stale``: as ``plan_contract``."""
    with engine.connect() as conn, conn.begin() as transaction:
        contract = store.lock_contract(conn, contract_id)
        plan = plan_contract(conn, contract, as_of, stale=stale, keep_pending=True)
        month = plan.month
        # the month's invoice run happens even with nothing to post
        invoice = close_month(conn, contract, month, as_of, plan.lines) if plan.due else None
        pending = [] if plan.due else plan.lines
        if plan.walked is None:
            store.replace_pending(conn, contract_id, plan.lines_as_of, pending)
            kept = None
        else:  # the other services' pending lines stay
            kept = store.refresh_pending(conn, contract, plan.lines_as_of, pending, plan.walked)
        settled.record(conn, contract, plan.start, plan.lines_as_of, plan.lines, kept and kept.first_day)
        if dry_run:
            transaction.rollback()
        return result(contract, invoice, pending, plan.lines_as_of, kept)


def _attempt(
    engine: Engine, as_of: date, dry_run: bool, stale: settled.StaleRead, contract_id: str
) -> ContractResult | Exception:
    """``bill_contract``, or the exception that failed it (listed and alerted by the caller)."""
    try:
        return bill_contract(engine, contract_id, as_of, dry_run=dry_run, stale=stale)
    except Exception as exc:  # noqa: BLE001 - one contract's failure never blocks the others
        if permission_denied(exc):  # the role, not the contract: every contract would fail alike
            raise
        return exc


def _alert_failure(engine: Engine, as_of: date, failure: FailedContract) -> None:
    """Queue one alert per failed contract and date to the data team (outbox, deduplicated)."""
    recipients = get_settings().data_team
    if not recipients:
        log.warning("no data-team recipients (AGENT_BILLING_DATA_TEAM_EMAILS): %s not alerted",
                    failure.contract_id)
        return
    body = (
        f"Billing contract {failure.contract_id} as of {as_of} failed and was rolled back:\n"
        f"{failure.error}\n\nThe other contracts were billed. Fix the cause, then run "
        f"`agent-billing bill --as-of {as_of} --contract {failure.contract_id}`.\n"
    )
    try:
        with engine.begin() as conn:
            queue_message(
                conn, f"billing-failure:{failure.contract_id}:{as_of}", "billing_failure", recipients,
                f"[agent-billing] Billing failed for {failure.contract_id} as of {as_of}", body,
            )
    except Exception as exc:  # noqa: BLE001 - the failure is still listed and fails the run
        log.error("could not queue the alert for %s: %s", failure.contract_id, one_line(exc))


def reconcile_contract(
    conn: Connection, contract: Contract, as_of: date, target: str, terms: list[Service],
    begin: settled.Start,
) -> tuple[list[Line], frozenset[str] | None]:
    """Expected − posted ledger of one contract as of ``as_of``, in the caller's transaction,
    over the months from ``begin.since`` (None: the whole ledger), of the services
    ``begin.walked`` leaves (their ids, or None: every service); ``terms``: ``store.service_terms``."""
    since = begin.since
    services = store.load_services(conn, contract, as_of, terms, since)
    walked = begin.walked(services)
    ids = None if walked is None else frozenset(s.service_id for s in walked)
    if walked is not None:
        services = walked
    posted = store.load_posted_net(conn, contract, since, ids)
    expected = ExpectedLedger(contract, services, as_of, posted, since)
    lines = reconcile(
        expected, posted, lambda: PostedLedger(store.load_posted(conn, contract, since, ids)),
        contract.currency, target,
    )
    return lines, ids


def result(
    contract: Contract, invoice: Invoice | None, pending: list[Line], as_of: date,
    kept: store.KeptPending | None = None,
) -> ContractResult:
    """A contract's result: its invoice, and its pending lines (``pending`` written and the
    ``kept`` ones)."""
    return ContractResult(
        contract_id=contract.contract_id,
        posting=contract.posting,
        currency=contract.currency,
        invoice=invoice,
        pending_lines=len(pending) + (kept.lines if kept else 0),
        pending_total=sum((x.amount for x in pending), kept.total if kept else Decimal(0)),
        pending_as_of=as_of,
    )
