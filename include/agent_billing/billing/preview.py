"""Preview a contract's next invoice without writing anything (SPEC §5 "Preview").

The lines are those of the real reconciliation (``run.plan_contract``) as of a date within
the billing horizon, in a transaction that is rolled back. When the contract's invoice for
that date's month is due (automatic, or a review contract not yet posted for the month) they
are that invoice; otherwise they are the lines known so far that the next invoice run will
carry, together with that month's normal lines.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import Engine

from agent_billing.billing import store
from agent_billing.billing.calendar import invoice_date, month_start, next_month
from agent_billing.billing.horizon import billing_horizon, billing_today, check_horizon
from agent_billing.billing.money import quantize
from agent_billing.billing.post import held_in_words, invoice_id
from agent_billing.billing.reconcile import retarget
from agent_billing.billing.run import plan_contract
from agent_billing.errors import UserError
from agent_billing.sync.changes import share_unit_history


def preview_invoice(
    engine: Engine, contract_id: str, as_of: date | None = None, *, today: date | None = None
) -> dict:
    """The next invoice of ``contract_id`` as of ``as_of`` (default: the billing horizon)."""
    asked = as_of
    with engine.connect() as conn, conn.begin() as transaction:
        share_unit_history(conn)  # the unit history as one state, as a billing run reads it
        as_of = as_of or billing_horizon(conn, today) or billing_today(today)
        check_horizon(conn, as_of, today, action="preview")
        contract = store.find_contract(conn, contract_id)
        if contract is None:
            raise UserError(f"unknown contract {contract_id}")
        plan = plan_contract(conn, contract, as_of)
        if asked is not None and plan.lines_as_of > asked:  # never a preview of another date, silently
            raise UserError(
                f"contract {contract_id} was billed as of {plan.lines_as_of} already, and its next "
                f"invoice is never computed as of an earlier date: preview it as of "
                f"{plan.lines_as_of} or later (--as-of {plan.lines_as_of}), not {asked}"
            )
        state = store.load_state(conn, contract_id)
        agents = store.change_agents(conn, contract_id)
        waiting = store.nights_to_recount(conn, contract_id, plan.lines_as_of)
        transaction.rollback()
    month, complete = _next_month(plan.month, state.last_invoice_month, contract.start_date)
    target = invoice_id(contract_id, month)
    lines = retarget(plan.lines, target)
    total = quantize(sum((x.amount for x in lines), Decimal(0)), contract.currency)
    return {
        "contract_id": contract_id,
        "posting": contract.posting,
        "currency": contract.currency,
        "as_of": plan.lines_as_of,
        "invoice_id": target,
        "invoice_month": month,
        "invoice_date": invoice_date(month, contract.billing_day, contract.start_date),
        # False: the month's normal lines are added on its invoice date, with later changes.
        "complete": complete,
        # None until complete: a total so far below 0 is no credit note (the month's lines come)
        "document_type": ("credit_note" if total < 0 else "invoice") if complete else None,
        "total": total,
        # not posted until these nights are re-run (billing.post.close_month refuses it)
        "held_until_recounted": {service: [str(d) for d in nights] for service, nights in waiting.items()},
        "held": held_in_words(contract_id, waiting) if waiting else None,
        "lines": [
            {
                "line_id": x.line_id, "service_id": x.service_id, "kind": x.kind,
                "period_start": x.period_start, "period_end": x.period_end, "units": x.units,
                "unit_price": x.unit_price, "days": x.days, "days_in_period": x.days_in_period,
                "amount": quantize(x.amount, contract.currency), "change_id": x.change_id,
                "adjusts_line_id": x.adjusts_line_id, "description": x.description,
                "agents": agents.get(x.change_id, []) if x.change_id else [],
            }
            for x in lines
        ],
    }


def _next_month(month: date | None, last_invoiced: date | None, start: date) -> tuple[date, bool]:
    """The invoice month the lines go on, and whether that invoice is complete already (its
    invoice date has passed but it is not posted yet)."""
    if month is not None and (last_invoiced is None or month > last_invoiced):
        return month, True
    after = next_month(last_invoiced) if last_invoiced else month_start(start)
    return after, False
