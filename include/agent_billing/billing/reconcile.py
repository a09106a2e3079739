"""Expected ledger minus posted ledger: the lines a run would post now.

A key not posted yet becomes a new line. A posted key whose expected units or amount now
differ (a backfill rewrote history, a service end date moved, a change was deleted) gets one
``adjustment`` line for the difference, linked to the original line: posted lines are never
edited, and earlier adjustments of the same line count as posted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from decimal import Decimal

from agent_billing.billing.calendar import month_end, month_start
from agent_billing.billing.expected import ExpectedLedger, PostedNet
from agent_billing.billing.model import Line, PostedLine, adjustment_key
from agent_billing.billing.money import quantize
from agent_billing.wording import units_text

PENDING = "pending"  # adjustment target of lines not on an invoice yet
_KIND_ORDER = {"normal": 0, "prorated": 1, "adjustment": 2}


class PostedLedger:
    """A contract's posted lines, netted per original (normal or prorated) line (the full rows:
    read when an adjustment has to be made)."""

    def __init__(self, rows: Iterable[PostedLine]) -> None:
        rows = list(rows)
        self.base: dict[str, PostedLine] = {r.line_key: r for r in rows if r.kind != "adjustment"}
        key_of = {r.line_id: key for key, r in self.base.items()}
        self._units = {key: r.units for key, r in self.base.items()}
        self._amount = {key: r.amount for key, r in self.base.items()}
        # the latest posting of each line (itself or its latest adjustment): its period is the days
        # billed. Invoice ids of a contract sort by month, and an invoice adjusts a line once.
        self.latest: dict[str, PostedLine] = dict(self.base)
        for r in rows:
            if r.kind == "adjustment":
                key = key_of[r.adjusts_line_id or ""]
                self._units[key] += r.units
                self._amount[key] += r.amount
                if r.invoice_id > self.latest[key].invoice_id:
                    self.latest[key] = r

    def is_posted(self, line_key: str) -> bool:
        return line_key in self.base

    def net_units(self, line_key: str) -> int | None:
        return self._units.get(line_key)

    def net_amount(self, line_key: str) -> Decimal:
        return self._amount[line_key]


def reconcile(
    expected: ExpectedLedger,
    posted: PostedNet,
    load_posted: Callable[[], PostedLedger],
    currency: str,
    target: str = PENDING,
) -> list[Line]:
    """Lines that make the posted ledger equal the expected one within its horizon.

    ``posted`` holds the net units and amount of each posted line (what almost every expected
    line just matches); the full ledger (``load_posted``) is read only when a line differs or a
    posted line is no longer expected, and the adjustments are made from it. ``target`` names
    where the lines go (an invoice id, or ``pending``): it is part of the adjustments' keys.
    """
    out, differing, matched = [], [], 0
    for entry in expected.entries():
        billed = posted.get(entry[0])
        if billed is None:
            out.append(expected.line(entry))
        else:
            matched += 1  # expected keys are unique: a posted key is matched at most once
            if billed[0] != entry[1] or billed[1] != entry[2]:
                differing.append(entry)
    if differing or matched != len(posted):
        ledger = load_posted()
        for entry in differing:
            line = expected.line(entry)
            if adjustment := _adjustment(ledger.base[line.line_key], line, ledger, currency, target, ""):
                out.append(adjustment)
        if matched != len(posted):
            keys = {entry[0] for entry in expected.entries()}
            for key, base in ledger.base.items():
                if key not in keys and expected.covers(base):
                    if adjustment := _adjustment(base, None, ledger, currency, target, expected.why_gone(base)):
                        out.append(adjustment)
    return sorted(
        out, key=lambda x: (x.service_id, x.period_start, _KIND_ORDER[x.kind], x.line_key)
    )


def retarget(lines: Iterable[Line], target: str) -> list[Line]:
    """The same lines with their adjustment keys pointing at ``target`` (an invoice id)."""
    return [
        replace(x, line_key=adjustment_key(x.adjusts_line_id, target))
        if x.kind == "adjustment" and x.adjusts_line_id
        else x
        for x in lines
    ]


def _adjustment(
    base: PostedLine, now: Line | None, posted: PostedLedger, currency: str, target: str, gone: str
) -> Line | None:
    """The adjustment making ``base`` bill ``now`` (None: no longer expected, ``gone`` says why),
    or None when it already does."""
    key = base.line_key
    billed_units, billed_amount = posted.net_units(key) or 0, posted.net_amount(key)
    units = now.units if now else 0
    amount = now.amount if now else Decimal(0)
    if units == billed_units and amount == billed_amount:
        return None
    ref: Line | PostedLine = now or base
    expected_text = (  # the days billed now, which the line's period and days columns give too
        f"now {units_text(units)} for {now.period_start}..{now.period_end} ({now.days}/{now.days_in_period} days), "
        f"{quantize(amount, currency)}" if now else "no longer applies" + (f", as {gone}" if gone else "")
    )
    billed = posted.latest[key]  # the days billed so far: beside the days now, they say what changed
    billed_days = (f" for {billed.period_start}..{billed.period_end}"
                   if billed_units or billed_amount else " (net of earlier corrections)")
    moved = _dates_moved(billed, now) if now and (billed_units or billed_amount) else ""
    return Line(
        line_key=adjustment_key(base.line_id, target),
        service_id=base.service_id,
        kind="adjustment",
        period_start=ref.period_start,
        period_end=ref.period_end,
        units=units - billed_units,
        unit_price=ref.unit_price,
        days=now.days if now else 0,
        days_in_period=ref.days_in_period,
        amount=quantize(amount - billed_amount, currency),
        change_id=base.change_id,
        adjusts_line_id=base.line_id,
        description=(
            f"correction of {key} (line {base.line_id} on {base.invoice_id}){moved}: {expected_text}; "
            f"billed {units_text(billed_units)}{billed_days}, {quantize(billed_amount, currency)}"
        ),
    )


def _dates_moved(billed: PostedLine, now: Line) -> str:
    """Why a line's days changed: a line's period is its month within the service's and its
    contract's dates, so a period that ends or starts elsewhere means one of those dates moved
    (to within the month: the new date; out of it: the date it no longer has)."""
    why = []
    if now.period_start != billed.period_start:
        why.append(f"now starts {now.period_start}" if now.period_start != month_start(now.period_start)
                   else f"no longer starts {billed.period_start}")
    if now.period_end != billed.period_end:
        why.append(f"now ends {now.period_end}" if now.period_end != month_end(now.period_end)
                   else f"no longer ends {billed.period_end}")
    return f", as the service or its contract {' and '.join(why)}" if why else ""
