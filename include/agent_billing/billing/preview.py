"""Preview a contract's next invoice without writing anything (SPEC §5 "Preview").

The lines are those of the real reconciliation (``run.plan_contract``) as of a date within
the billing horizon, in a transaction that is rolled back. When the contract's invoice for
that date's month is due (automatic, or a review contract not yet posted for the month) they
are that invoice; otherwise they are the lines known so far that the next invoice run will
carry, and the forecast is the same reconciliation as of the invoice date: the lines so far,
the month's normal lines, and what the contracts date between the two, with the units of the
nights counted by then (a night not synced yet changes nothing in it; a service never counted
yet is billed 0 units in it, and named).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import Engine

from agent_billing.billing import store
from agent_billing.billing.calendar import invoice_date, month_start, next_month
from agent_billing.billing.horizon import (
    billing_horizon,
    billing_today,
    check_horizon,
    latest_concluded_date,
)
from agent_billing.billing.model import Line
from agent_billing.billing.money import quantize
from agent_billing.billing.post import held_in_words, invoice_id, left_out_in_words
from agent_billing.billing.reconcile import retarget
from agent_billing.billing.review import nights_left_out, posts_as_previewed
from agent_billing.billing.run import billed_as_of, plan_contract
from agent_billing.errors import UserError
from agent_billing.sync.changes import share_unit_history


def preview_invoice(
    engine: Engine, contract_id: str, as_of: date | None = None, *, today: date | None = None
) -> dict:
    """The next invoice of ``contract_id`` as of ``as_of`` (default: the billing horizon)."""
    asked = as_of
    with engine.connect() as conn, conn.begin() as transaction:
        share_unit_history(conn)  # the unit history as one state, as a billing run reads it
        contract = store.find_contract(conn, contract_id)
        if contract is None:
            raise UserError(f"unknown contract {contract_id}")
        state = store.load_state(conn, contract_id)
        as_of = as_of or billing_horizon(conn, today) or billing_today(today)
        check_horizon(conn, as_of, today, action="preview", earliest=billed_as_of(state))
        plan = plan_contract(conn, contract, as_of)
        if asked is not None and plan.lines_as_of > asked:  # never a preview of another date, silently
            raise UserError(
                f"contract {contract_id} was billed as of {plan.lines_as_of} already, and its next "
                f"invoice is never computed as of an earlier date: preview it as of "
                f"{plan.lines_as_of} or later (--as-of {plan.lines_as_of}), not {asked}"
            )
        agents = store.change_agents(conn, contract_id)
        month, complete = _next_month(plan.month, state.last_invoice_month, contract.start_date)
        due_on = invoice_date(month, contract.billing_day, contract.start_date)
        # the nights that hold the run posting it: as of the preview's date, or the invoice date's
        waiting = store.nights_to_recount(conn, contract_id, plan.lines_as_of if complete else due_on)
        bill_first = None
        if complete and contract.posting == "review" and plan.lines:  # `post` posts the last run's lines
            if not posts_as_previewed(contract, month, plan.lines, *store.load_pending(conn, contract)):
                bill_first = plan.lines_as_of  # a run as of this date makes them the lines shown
        forecast = None
        if not complete:  # the nights counted by then, whatever the preview's date (a later one too)
            counted_until = min(latest_concluded_date(conn), due_on)
            forecast = (plan_contract(conn, contract, due_on).lines, counted_until,
                        store.uncounted_services(conn, contract, due_on, month),
                        nights_left_out(conn, contract, counted_until))
        left_out = nights_left_out(conn, contract, plan.lines_as_of) if complete else {}
        transaction.rollback()
    target = invoice_id(contract_id, month)
    lines = retarget(plan.lines, target)
    total = _total(lines, contract.currency)
    return {
        "contract_id": contract_id,
        "posting": contract.posting,
        "currency": contract.currency,
        "as_of": plan.lines_as_of,
        "invoice_id": target,
        "invoice_month": month,
        "invoice_date": due_on,
        # False: the month's normal lines are added on its invoice date, with later changes.
        "complete": complete,
        # None until complete: a total so far below 0 is no credit note (the month's lines come)
        "document_type": ("credit_note" if total < 0 else "invoice") if complete else None,
        "total": total,
        # not posted until these nights are re-run (billing.post.close_month refuses it)
        "held_until_recounted": {service: [str(d) for d in nights] for service, nights in waiting.items()},
        "held": held_in_words(contract_id, waiting) if waiting else None,
        # a complete invoice's nights that no run reads (quarantined, failed): posted without them
        "nights_not_counted": list(left_out),
        "not_counted_note": left_out_in_words(left_out) if left_out else None,
        # a review invoice not posted by the next invoice date goes on the next month's invoice
        "post_before": (invoice_date(next_month(month), contract.billing_day, contract.start_date)
                        if complete and contract.posting == "review" and lines else None),
        # a review invoice whose pending lines are not these (no billing run as of a date of this
        # invoice month, or since a night that changed them): `post` would post those, so a run
        # as of this date comes first
        "bill_first": bill_first,
        "lines": [_line(x, contract.currency, agents) for x in lines],
        # None when complete; else the invoice on its invoice date if nothing is counted after as_of
        "forecast": None if forecast is None else _forecast(*forecast, target, lines, contract.currency, agents),
    }


def _forecast(forecast: list[Line], counted_until: date, uncounted: list[str], not_counted: dict[date, str],
              target: str, so_far: list[Line], currency: str, agents: dict) -> dict:
    """The forecast's total, the nights it counts (and those before it that it cannot: held or
    failed), the services it bills at 0 for want of a count, and the lines it adds to those so
    far (the month's normal lines)."""
    known = {x.line_key for x in so_far}
    return {
        "total": _total(forecast, currency),
        "counted_until": counted_until,
        "nights_not_counted": list(not_counted),
        "not_counted_note": left_out_in_words(not_counted) if not_counted else None,
        "uncounted_services": uncounted,
        "added_lines": [_line(x, currency, agents) for x in retarget(forecast, target) if x.line_key not in known],
    }


def _total(lines: list[Line], currency: str) -> Decimal:
    return quantize(sum((x.amount for x in lines), Decimal(0)), currency)


def _line(x: Line, currency: str, agents: dict) -> dict:
    return {
        "line_id": x.line_id, "service_id": x.service_id, "kind": x.kind,
        "period_start": x.period_start, "period_end": x.period_end, "units": x.units,
        "unit_price": x.unit_price, "days": x.days, "days_in_period": x.days_in_period,
        "amount": quantize(x.amount, currency), "change_id": x.change_id,
        "adjusts_line_id": x.adjusts_line_id, "description": x.description,
        "agents": agents.get(x.change_id, []) if x.bills_agents else [],
    }


def _next_month(month: date | None, last_invoiced: date | None, start: date) -> tuple[date, bool]:
    """The invoice month the lines go on, and whether that invoice is complete already (its
    invoice date has passed but it is not posted yet)."""
    if month is not None and (last_invoiced is None or month > last_invoiced):
        return month, True
    after = next_month(last_invoiced) if last_invoiced else month_start(start)
    return after, False
