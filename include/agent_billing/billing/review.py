"""Billing review: the pending lines a person checks, and posting them once approved."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date
from decimal import Decimal

from sqlalchemy import Connection, Engine

from agent_billing.billing import store
from agent_billing.billing.calendar import billing_month, month_label
from agent_billing.billing.horizon import billing_horizon, check_horizon
from agent_billing.billing.model import Contract, Line
from agent_billing.billing.money import quantize
from agent_billing.billing.post import (
    close_month,
    held_in_words,
    held_until,
    invoice_id,
    left_out_in_words,
)
from agent_billing.billing.reconcile import retarget
from agent_billing.billing.run import ContractResult, plan_contract, plan_lines, result
from agent_billing.errors import UserError
from agent_billing.sync.changes import share_unit_history

log = logging.getLogger(__name__)


def pending_lines(engine: Engine, contract_id: str | None = None) -> list[dict]:
    """Rows of ``billing_review`` with service names, for every contract or one."""
    with engine.connect() as conn:
        if contract_id is not None and store.find_contract(conn, contract_id) is None:
            raise UserError(f"unknown contract {contract_id}")
        rows = conn.execute(store.query("review"), {"contract_id": contract_id}).mappings()
        return [{**r, "amount": quantize(r["amount"], r["currency"])} for r in rows]


def review_notes(engine: Engine, pending: list[dict], contract_id: str | None = None) -> list[str]:
    """What a reviewer of the ``pending_lines`` rows (of every contract, or ``contract_id``'s)
    must know beside them, one line each: nights that hold them, nights they leave out, lines
    out of date, an invoice due, lines a run would give a contract that has none."""
    return (held_by_uncounted_nights(engine, pending) + not_counted_in(engine, pending) + out_of_date(engine, pending)
            + due_to_bill(engine, pending) + unbilled(engine, pending, contract_id))


def nights_left_out(conn: Connection, contract: Contract, as_of: date) -> dict[date, str]:
    """The contract's nights through ``as_of`` that no billing run reads, quarantined or failed
    (date → status): an invoice posted without them is right for what was counted, and what
    they change once released or re-run goes on a later one. Named until a person acts: a
    failed night re-run becomes complete, or a gap when its landing is gone and it is late."""
    return store.nights_not_counted(conn, contract.start_date, as_of)


def not_counted_in(engine: Engine, pending: list[dict]) -> list[str]:
    """One line per contract of the ``pending_lines`` rows whose lines leave out nights."""
    with engine.connect() as conn:
        return [
            f"contract {contract_id}: not in these lines, {left_out_in_words(nights)}"
            for contract_id, (_, day) in _pending_runs(pending).items()
            if (nights := nights_left_out(conn, store.find_contract(conn, contract_id), day))
        ]


def held_by_uncounted_nights(engine: Engine, pending: list[dict]) -> list[str]:
    """One line per contract of the ``pending_lines`` rows that cannot be posted until nights a
    contracts change left uncounted are re-run (``post.refuse_nights_to_recount``)."""
    with engine.connect() as conn:
        return [
            held_in_words(contract_id, waiting)
            for contract_id, (_, day) in _pending_runs(pending).items()
            if (waiting := store.nights_to_recount(conn, contract_id, day))
        ]


def out_of_date(engine: Engine, pending: list[dict]) -> list[str]:
    """One line per contract of the ``pending_lines`` rows whose lines a run as of their date
    would no longer compute (a contracts change since that run: a price corrected, a service
    added or ended), so that nobody reviews figures no invoice will carry. As a nightly run,
    each contract computes only the services whose lines may have changed (``settled``): the
    check costs what a night's billing costs. Read-only: each contract is reconciled in its own
    transaction, rolled back; one that cannot be is named, not fatal."""
    lines = []
    for contract_id, (_, day) in _pending_runs(pending).items():
        try:
            computed, kept = _computed_again(engine, contract_id, day)
        except Exception as exc:  # noqa: BLE001 - one contract's trouble never hides the others' lines
            lines.append(_not_checked(contract_id, day, "these pending lines are up to date", exc, "computes them again"))
            continue
        if not same_lines(computed, kept):
            lines.append(f"contract {contract_id}: these pending lines are out of date (something they bill changed "
                         f"since the billing run as of {day}: a contracts change, a night re-run): "
                         f"{refresh_command(contract_id, day)} computes them again")
    return lines


def unbilled(engine: Engine, pending: list[dict], contract_id: str | None = None) -> list[str]:
    """One line per contract (every one, or ``contract_id``) without ``pending_lines`` rows that a
    billing run as of the billing horizon gives lines to review or post: a service added or a
    price corrected since its last run, a night counted that no run has billed, an invoice date
    passed. The run that writes them has not happened, so ``review`` would show nothing of them.
    Read-only, as ``out_of_date``."""
    with engine.connect() as conn:
        horizon = billing_horizon(conn)
        ids = [contract_id] if contract_id is not None else store.contract_ids(conn)
        held = store.held_contracts(conn, horizon, contract_id) if horizon is not None else {}
    if horizon is None:  # no night concluded: no run can bill anything yet
        return []
    lines = []
    for cid in sorted(set(ids) - set(_pending_runs(pending))):
        try:
            computed, _ = _computed_again(engine, cid, horizon)
        except Exception as exc:  # noqa: BLE001 - one contract's trouble never hides the others'
            lines.append(_not_checked(cid, horizon, "a billing run gives it lines", exc, "shows"))
            continue
        if computed:
            lines.append(f"contract {cid}: no pending lines, but a billing run as of {horizon} gives it "
                         f"{len(computed)} line(s) (a contracts change, a night or an invoice date since its "
                         f"last run): {_what_a_run_does(engine, cid, horizon, held.get(cid, {}))}")
        elif cid in held:  # no line yet (its added service has no count), its invoice held all the same
            lines.append(held_in_words(cid, held[cid]))
    return lines


def _what_a_run_does(engine: Engine, contract_id: str, horizon: date,
                     waiting: dict[str, list[date]] | None = None) -> str:
    """What the billing run as of the horizon does with a contract's lines: an automatic
    contract's due invoice is posted by it, final; a review contract's due invoice waits for
    `post`; other lines wait for the next invoice date, which nights to recount (``waiting``,
    read when None) hold."""
    with engine.connect() as conn:
        contract = store.find_contract(conn, contract_id)
        due = _due_invoice(contract, store.load_state(conn, contract_id).last_invoice_month, horizon)
        if waiting is None:
            waiting = store.nights_to_recount(conn, contract_id, horizon)
    run = refresh_command(contract_id, horizon)
    preview = f"`agent-billing invoices preview --contract {contract_id}` shows them"
    if due and waiting:  # the invoice is refused until then (post.refuse_nights_to_recount)
        recount = f"its invoice of {month_label(due[0])} {held_until(waiting)}"
        if contract.posting == "automatic":
            return f"{recount}; then {run} posts them, final ({preview} first)"
        return f"{run} computes them for review; {recount}"
    if due and contract.posting == "automatic":
        return f"{run} posts them as its invoice of {month_label(due[0])}, final ({preview} first)"
    if due:
        return f"{run} computes them for review, then post them as its invoice of {month_label(due[0])}"
    held = f"; that invoice {held_until(waiting)}" if waiting else ""
    return f"{run} computes them; they wait for its next invoice date ({preview}){held}"


def _computed_again(engine: Engine, contract_id: str, day: date) -> tuple[list[Line], list[Line]]:
    """The lines a run as of ``day`` computes for the contract, as a nightly run does (only the
    services whose lines may have changed: ``settled``), and the pending lines of those
    services. In a transaction of its own, rolled back."""
    with engine.connect() as conn, conn.begin() as transaction:
        share_unit_history(conn)  # the unit history as one state, as a billing run reads it
        contract = store.find_contract(conn, contract_id)
        plan = plan_contract(conn, contract, day, keep_pending=True)
        kept = store.load_pending(conn, contract)[0]
        if plan.walked is not None:  # the others' lines hold: compare those computed again
            kept = [x for x in kept if x.service_id in plan.walked]
        transaction.rollback()
    return plan.lines, kept


def _not_checked(contract_id: str, day: date, what: str, exc: Exception, does: str) -> str:
    log.warning("contract %s: whether %s was not checked: %s", contract_id, what, exc)
    return (f"contract {contract_id}: whether {what} could not be checked ({type(exc).__name__}); "
            f"{refresh_command(contract_id, day)} {does}")


def due_to_bill(engine: Engine, pending: list[dict]) -> list[str]:
    """One line per review contract of the ``pending_lines`` rows whose next invoice is due but
    whose pending lines are of an earlier month (no billing run since its invoice date): `post`
    would post them as that earlier month's invoice, or refuse them when it has one; a run as of
    the horizon makes them the due invoice's (the rule of a review invoice not posted in time).
    Or whose lines are of an earlier date than the horizon, in the same month: `post` posts them
    as they are, and a run as of the horizon would add what the nights since changed (as
    `invoices preview` says)."""
    lines = []
    with engine.connect() as conn:
        horizon = billing_horizon(conn)
        for contract_id, (posting, day) in _pending_runs(pending).items():
            if posting != "review":
                continue
            contract = store.find_contract(conn, contract_id)
            last = store.load_state(conn, contract_id).last_invoice_month
            due = _due_invoice(contract, last, horizon)
            if due and billing_month(day, contract.billing_day, contract.start_date) != due[0]:
                lines.append(f"contract {contract_id}: these lines are as of {day}; {_bill_then_post(contract_id, *due)}")
            elif horizon is not None and horizon > day:  # the nights since are in no line yet
                lines.append(
                    f"contract {contract_id}: these lines are as of {day}, and the nights up to {horizon} have "
                    f"synced since without a billing run: {refresh_command(contract_id, horizon)} brings them in "
                    "(`invoices preview` shows them), or post these as they are: what those nights change then "
                    "goes on the next invoice")
    return lines


def _due_invoice(contract: Contract, last_invoiced: date | None, horizon: date | None) -> tuple[date, date] | None:
    """(month, horizon) when a run as of the billing ``horizon`` reaches an invoice month after
    ``last_invoiced``; None otherwise."""
    month = billing_month(horizon, contract.billing_day, contract.start_date) if horizon else None
    if month is None or (last_invoiced is not None and month <= last_invoiced):
        return None
    return month, horizon


def _bill_then_post(contract_id: str, month: date, horizon: date) -> str:
    return (f"its invoice of {month_label(month)} is due: bill as of {horizon} first "
            f"({refresh_command(contract_id, horizon)}), then post it")


def refresh_command(contract_id: str, as_of: date) -> str:
    """The command that computes a contract's pending lines again as of their date."""
    return f"`agent-billing bill --as-of {as_of} --contract {contract_id}`"


def _pending_runs(pending: list[dict]) -> dict[str, tuple[str, date]]:
    """Each contract of the ``pending_lines`` rows: its posting and the date its lines are as of."""
    return {r["contract_id"]: (r["posting"], r["as_of"]) for r in pending}


class NothingToPost(UserError):
    """The contract has no pending lines."""


def post_reviewed(
    engine: Engine, contract_id: str, as_of: date | None = None, expect_total: Decimal | None = None
) -> ContractResult:
    """``post_pending``; a contract with nothing to post is told the run that gives it lines, if
    any (a first invoice due, a service added since the last run)."""
    try:
        return post_pending(engine, contract_id, as_of, expect_total)
    except NothingToPost as exc:
        with engine.connect() as conn:
            horizon = billing_horizon(conn)
        try:
            computed = _computed_again(engine, contract_id, horizon)[0] if horizon else []
        except Exception:  # noqa: BLE001 - the refusal stands as it is
            log.warning("contract %s: whether a billing run gives it lines was not checked", contract_id, exc_info=True)
            raise exc from None
        if not computed:
            raise
        raise NothingToPost(f"{exc}; a billing run as of {horizon} gives it {len(computed)} line(s): "
                            f"{_what_a_run_does(engine, contract_id, horizon)}") from None


def post_pending(
    engine: Engine, contract_id: str, as_of: date | None = None, expect_total: Decimal | None = None
) -> ContractResult:
    """Post a contract's reviewed pending lines as its invoice for the month of their date.

    The lines are reconciled again as of that date (default: the date of the pending lines),
    from the months the contract's last run left unsettled, as that run did, and posted only if
    they are the lines under review (their descriptions aside: a renamed service changes no
    money). ``expect_total``: the total the reviewer saw; a nightly run may have refreshed the
    pending lines since, and then nothing is posted.
    """
    with engine.begin() as conn:
        contract = store.lock_contract(conn, contract_id)
        if contract.posting != "review":
            raise UserError(
                f"contract {contract_id} posts automatically: the billing run posts each of its invoices on "
                "its invoice date (`agent-billing invoices preview --contract "
                f"{contract_id}` shows the next one); `post` is for contracts with posting: review")
        pending, pending_as_of = store.load_pending(conn, contract)
        if pending_as_of is None or not pending:
            last = store.load_state(conn, contract_id).last_invoice_month
            latest = f" (its latest invoice is {invoice_id(contract_id, last)})" if last else ""
            raise NothingToPost(f"contract {contract_id} has no pending lines to post{latest}")
        if as_of is not None and as_of < pending_as_of:  # a run for an earlier date never moves them back
            raise UserError(
                f"the pending lines of contract {contract_id} are as of {pending_as_of}, later than "
                f"{as_of}: post them as of {pending_as_of} or later (leave out --as-of); the months "
                "not invoiced yet go on that invoice"
            )
        as_of = as_of or pending_as_of
        check_horizon(conn, as_of, action="post")  # never an invoice for a month the sync has not reached
        month = billing_month(as_of, contract.billing_day, contract.start_date)
        state = store.load_state(conn, contract_id)
        if month is None:
            raise UserError(f"contract {contract_id} has no invoice date on or before {as_of}")
        if state.last_invoice_month is not None and month <= state.last_invoice_month:
            due = _due_invoice(contract, state.last_invoice_month, billing_horizon(conn))
            raise UserError(
                f"contract {contract_id} already has an invoice for "
                f"{month_label(state.last_invoice_month)}; its pending lines wait for the next "
                "invoice month" + (f"; {_bill_then_post(contract_id, *due)}" if due else "")
            )
        lines = plan_lines(conn, contract, as_of)
        if not same_lines(lines, pending):
            raise UserError(
                f"the pending lines of contract {contract_id} are out of date as of {as_of}: "
                f"run {refresh_command(contract_id, as_of)} and review them again"
            )
        total = sum((x.amount for x in lines), Decimal(0))
        if expect_total is not None and total != expect_total:
            raise UserError(
                f"the pending lines of contract {contract_id} total {total} {contract.currency}, not the "
                f"{expect_total} you typed: check the figure, or a billing run refreshed them since "
                f"they were reviewed (`agent-billing review --contract {contract_id}` shows them now); "
                "nothing was posted"
            )
        left_out = nights_left_out(conn, contract, as_of)
        target = invoice_id(contract_id, month)
        invoice = close_month(conn, contract, month, as_of, retarget(lines, target))
        store.replace_pending(conn, contract_id, as_of, [])
        log.info("posted %s: %d line(s), total %s", invoice.invoice_id, invoice.lines, invoice.total)
        return replace(result(contract, invoice, [], as_of), nights_left_out=tuple(left_out.items()))


def posts_as_previewed(contract: Contract, month: date, lines: list[Line], pending: list[Line],
                       pending_as_of: date | None) -> bool:
    """Whether ``post_reviewed`` (the pending lines, as of their date) would post ``lines`` as
    the invoice of ``month``: not when the last billing run was as of another invoice month, or
    computed other lines (a later night changed a unit; ``bill`` refreshes them)."""
    return (pending_as_of is not None and same_lines(lines, pending)
            and billing_month(pending_as_of, contract.billing_day, contract.start_date) == month)


def same_lines(lines: list[Line], others: list[Line]) -> bool:
    """Whether two sets of lines bill the same, their descriptions aside (a renamed service
    changes no money)."""
    return {_billed(x) for x in lines} == {_billed(x) for x in others}


def _billed(line: Line) -> Line:
    """What a line bills, without the words that explain it (a service's name is in them)."""
    return replace(line, description="")


