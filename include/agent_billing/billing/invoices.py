"""Posted invoices for people: the invoices of a month, one invoice with its lines."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Engine

from agent_billing.billing import store
from agent_billing.billing.horizon import BillingHorizonError, billing_horizon
from agent_billing.billing.money import quantize
from agent_billing.errors import UserError


def list_invoices(engine: Engine, month: date) -> list[dict]:
    """The invoices and credit notes of an invoice month, with their line counts."""
    with engine.connect() as conn:
        rows = conn.execute(store.query("invoices_of_month"), {"invoice_month": month}).mappings()
        return [{**r, "total": quantize(r["total"], r["currency"])} for r in rows]


def check_month_reached(engine: Engine, month: date, today: date | None = None) -> None:
    """Refuse a month without invoices that billing has not reached (a typo, or nights not
    synced yet): its empty list or export would read as a month without invoices. A month with
    invoices is never refused (the horizon can move back: a reopened night, a timezone)."""
    with engine.connect() as conn:
        if conn.execute(store.query("invoices_of_month"), {"invoice_month": month}).first() is not None:
            return
        horizon = billing_horizon(conn, today)
    if horizon is None or month > horizon:
        reach = ("no nightly sync has concluded yet" if horizon is None
                 else f"billing reaches {horizon} (the billing horizon: the latest concluded sync date, or today)")
        raise BillingHorizonError(f"no invoice of {month:%Y-%m} can exist yet: {reach}; check --month")


def show_invoice(engine: Engine, invoice_id: str) -> dict:
    """One invoice with its lines (``lines``), each line of a unit change with the agents behind
    it as posted (``agents``); an unknown id is a ``UserError``."""
    with engine.connect() as conn:
        head = conn.execute(store.query("invoice"), {"invoice_id": invoice_id}).mappings().first()
        if head is None:
            raise UserError(f"unknown invoice {invoice_id} (see `agent-billing invoices list --month YYYY-MM`)")
        currency = head["currency"]
        agents = store.line_agents(conn, invoice_id)
        lines = [
            {**r, "amount": quantize(r["amount"], currency), "agents": agents.get(r["line_id"], [])}
            for r in conn.execute(store.query("invoice_lines"), {"invoice_id": invoice_id}).mappings()
        ]
    return {**head, "total": quantize(head["total"], currency), "lines": lines}
