"""Posting: turn reconciled lines into an invoice (or a credit note) of a contract's month."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import Connection

from agent_billing.billing import store
from agent_billing.billing.calendar import invoice_date, month_label
from agent_billing.billing.model import Contract, Line
from agent_billing.errors import UserError
from agent_billing.sync.dates import date_runs


class NightsNotCounted(UserError):
    """An invoice refused: a contracts change made one of its services countable on synced
    nights that have not been re-run, and those days would bill at another night's units."""


@dataclass(frozen=True, slots=True)
class Invoice:
    invoice_id: str
    invoice_date: date
    invoice_month: date
    total: Decimal
    document_type: str  # invoice | credit_note
    lines: int


def invoice_id(contract_id: str, month: date) -> str:
    """Deterministic: one invoice per contract and month, also enforced by a unique key."""
    return f"INV-{contract_id}-{month_label(month)}"


def close_month(
    conn: Connection, contract: Contract, month: date, as_of: date, lines: Sequence[Line]
) -> Invoice | None:
    """The invoice run of ``month``: its invoice with ``lines`` (none without lines), and the
    month recorded as invoiced (``billing_cycles``), in the caller's transaction.

    Refused (``NightsNotCounted``) while a service of the contract has nights to recount up to
    ``as_of``, with lines or without: an invoice is never edited, and a month closed without
    one would never post the lines those nights hold (a new contract whose services were all
    uncounted would lose its first invoice). A concurrent run that closed the same month first
    makes this fail on the unique keys instead of billing twice.
    """
    refuse_nights_to_recount(conn, contract, month, as_of)
    invoice = _post_invoice(conn, contract, month, as_of, lines) if lines else None
    store.close_cycle(conn, contract.contract_id, month, as_of, invoice.invoice_id if invoice else None)
    return invoice


def _post_invoice(
    conn: Connection, contract: Contract, month: date, as_of: date, lines: Sequence[Line]
) -> Invoice:
    """Insert the invoice of ``month`` with ``lines``; a negative total makes a credit note."""
    total = sum((x.amount for x in lines), Decimal(0))
    invoice = Invoice(
        invoice_id=invoice_id(contract.contract_id, month),
        invoice_date=invoice_date(month, contract.billing_day, contract.start_date),
        invoice_month=month,
        total=total,
        document_type="credit_note" if total < 0 else "invoice",
        lines=len(lines),
    )
    store.insert_invoice(
        conn,
        {
            "invoice_id": invoice.invoice_id,
            "contract_id": contract.contract_id,
            "invoice_date": invoice.invoice_date,
            "invoice_month": month,
            "currency": contract.currency,
            "total": total,
            "document_type": invoice.document_type,
            "as_of": as_of,
        },
        lines,
    )
    return invoice


def refuse_nights_to_recount(conn: Connection, contract: Contract, month: date, as_of: date) -> None:
    """Raise ``NightsNotCounted`` naming each service with nights to recount up to ``as_of``."""
    waiting = store.nights_to_recount(conn, contract.contract_id, as_of)
    if not waiting:
        return
    services = nights_in_words(waiting)
    raise NightsNotCounted(
        f"cannot post {invoice_id(contract.contract_id, month)}: a contracts change made services active on "
        f"synced nights that did not count them ({services}); re-run those nights (agent-billing sync --date D "
        "for each, or an Airflow backfill of vsa_asset_sync; docs/runbook.md, 'Fix a wrong contract'), or accept the "
        "nights whose landing is gone, damaged or without the service's view (agent-billing snapshots "
        "accept-uncounted D [--through D2] --service S), then bill again"
    )


#: Where what a run's left-out nights change goes, said of a run of many contracts.
LEFT_OUT_OF_A_RUN = "goes on the next invoice of each contract they count for"


def left_out_in_words(nights: dict[date, str], *, posted: bool = False, decided: str | None = None) -> str:
    """``review.nights_left_out`` as a clause: each status with what a person does about it, then where
    what they change goes (``decided``: said of it, e.g. for a run of many contracts)."""
    held = [d for d, status in nights.items() if status == "quarantined"]
    failed = [d for d, status in nights.items() if status == "failed"]
    parts = ([f"quarantined {date_runs(held)} (release or discard: agent-billing snapshots release|discard "
              f"{held[0]})"] if held else []) + (
             [f"failed {date_runs(failed)} (re-run: agent-billing sync --date {failed[0]})"] if failed else [])
    then = f"once decided, what they change {decided}" if decided else (
        "once decided, what they change goes on a later invoice" if posted else
        "decided before the invoice is posted, what they change is on it; after, on a later one")
    return f"the nights {'; '.join(parts)}; {then}"


def held_in_words(contract_id: str, waiting: dict[str, list[date]]) -> str:
    """What ``review`` and ``preview`` say of a contract held by ``store.nights_to_recount``."""
    return f"contract {contract_id} {held_until(waiting)}"


def held_until(waiting: dict[str, list[date]]) -> str:
    """``cannot be posted until …``: what holds an invoice (``store.nights_to_recount``)."""
    return (f"cannot be posted until these nights are re-run, or accepted where no re-run can count them: "
            f"{nights_in_words(waiting)} (docs/runbook.md, 'Fix a wrong contract')")


def nights_in_words(waiting: dict[str, list[date]]) -> str:
    """``store.nights_to_recount`` in words: ``service S on D1 to D3; service T on D2``."""
    return "; ".join(f"service {service} on {date_runs(nights)}" for service, nights in waiting.items())
