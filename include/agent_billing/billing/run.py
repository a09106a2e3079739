"""A billing run: for each contract, in its own transaction, expected − posted ⇒ lines.

If the contract posts automatically and its invoice month (the latest month whose invoice
date is on or before ``as_of``) has no invoice yet, nor any later month, the lines become
that month's invoice. Otherwise they replace the contract's pending lines (``billing_review``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import Connection, Engine

from agent_billing.billing import store
from agent_billing.billing.calendar import billing_month
from agent_billing.billing.expected import expected_ledger
from agent_billing.billing.model import Contract, Line
from agent_billing.billing.post import Invoice, invoice_id, post_invoice
from agent_billing.billing.reconcile import PENDING, PostedLedger, reconcile
from agent_billing.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ContractResult:
    contract_id: str
    posting: str
    currency: str
    invoice: Invoice | None  # posted by this run
    pending_lines: int
    pending_total: Decimal
    pending_as_of: date  # the date the pending lines were computed as of


@dataclass(frozen=True, slots=True)
class BillingSummary:
    as_of: date
    contracts: tuple[ContractResult, ...]

    @property
    def invoices_posted(self) -> int:
        return sum(1 for c in self.contracts if c.invoice)

    @property
    def lines_posted(self) -> int:
        return sum(c.invoice.lines for c in self.contracts if c.invoice)

    @property
    def pending_lines(self) -> int:
        return sum(c.pending_lines for c in self.contracts)


def run_billing(
    engine: Engine, as_of: date, *, contract_ids: list[str] | None = None
) -> BillingSummary:
    """Bill every contract (or ``contract_ids``) as of ``as_of``; idempotent."""
    with engine.connect() as conn:
        known = store.contract_ids(conn)
    if contract_ids is not None:
        unknown = sorted(set(contract_ids) - set(known))
        if unknown:
            raise UserError(f"unknown contract(s): {', '.join(unknown)}")
        known = [c for c in known if c in set(contract_ids)]
    log.info("billing %d contract(s) as of %s", len(known), as_of)
    step = max(1, len(known) // 10)
    results = []
    for n, contract_id in enumerate(known, 1):
        results.append(bill_contract(engine, contract_id, as_of))
        if n % step == 0 or n == len(known):
            log.info("billed %d/%d contracts", n, len(known))
    summary = BillingSummary(as_of, tuple(results))
    if summary.invoices_posted and engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(store.statement("analyze_ledger"))
    log.info(
        "billing as of %s: %d invoice(s) with %d line(s) posted, %d line(s) pending review",
        as_of, summary.invoices_posted, summary.lines_posted, summary.pending_lines,
    )
    return summary


def bill_contract(engine: Engine, contract_id: str, as_of: date) -> ContractResult:
    """Bill one contract as of ``as_of`` in one transaction (its invoice or its pending lines)."""
    with engine.begin() as conn:
        contract = store.lock_contract(conn, contract_id)
        state = store.load_state(conn, contract_id)
        month = billing_month(as_of, contract.billing_day, contract.start_date)
        due = (
            contract.posting == "automatic"
            and month is not None
            and (state.last_invoice_month is None or month > state.last_invoice_month)
        )
        if due:
            lines_as_of, target = as_of, invoice_id(contract_id, month)
        else:
            # Pending lines never go back in time: a backfill run for an old date refreshes
            # the review as of the latest date the contract was billed or reviewed at.
            lines_as_of = max(
                d for d in (as_of, state.last_invoice_as_of, state.pending_as_of) if d is not None
            )
            target = PENDING
        lines = reconcile_contract(conn, contract, lines_as_of, target)
        invoice = post_invoice(conn, contract, month, as_of, lines) if due and lines else None
        if due:  # the month's invoice run happened, even with nothing to post
            store.close_cycle(conn, contract_id, month, as_of, invoice.invoice_id if invoice else None)
        pending = [] if due else lines
        store.replace_pending(conn, contract_id, lines_as_of, pending)
        return result(contract, invoice, pending, lines_as_of)


def reconcile_contract(
    conn: Connection, contract: Contract, as_of: date, target: str = PENDING
) -> list[Line]:
    """Expected − posted ledger of one contract as of ``as_of``, in the caller's transaction."""
    services = store.load_services(conn, contract, as_of)
    posted = PostedLedger(store.load_posted(conn, contract))
    expected = expected_ledger(contract, services, as_of, posted)
    return reconcile(expected, posted, contract.currency, target)


def result(
    contract: Contract, invoice: Invoice | None, pending: list[Line], as_of: date
) -> ContractResult:
    return ContractResult(
        contract_id=contract.contract_id,
        posting=contract.posting,
        currency=contract.currency,
        invoice=invoice,
        pending_lines=len(pending),
        pending_total=sum((x.amount for x in pending), Decimal(0)),
        pending_as_of=as_of,
    )
