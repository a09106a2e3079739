"""The billing engine's records: contracts, services with their unit changes, ledger lines."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import NamedTuple

from agent_billing.billing.calendar import month_label


@dataclass(frozen=True, slots=True)
class Contract:
    contract_id: str
    account_id: str
    currency: str
    billing_day: int
    posting: str  # automatic | review
    start_date: date
    end_date: date | None


class UnitChange(NamedTuple):
    """A tuple: a contract's year of changes is built from its rows each night (a frozen
    dataclass costs several times more to create)."""

    change_id: str
    service_id: str
    effective_date: date
    units_before: int
    units_after: int
    delta: int
    source: str  # nightly_sync | get_units_now | manual
    # When the observation was made, as read (SQLite: naive UTC text): orders changes of the
    # same date (``timeline.ordered``).
    detected_at: datetime | str


@dataclass(frozen=True, slots=True)
class Service:
    service_id: str
    name: str
    unit_price: Decimal
    start_date: date
    end_date: date | None
    start_units: int
    changes: tuple[UnitChange, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Line:
    """One invoice line, expected, pending or posted; ``line_key`` is its natural key."""

    line_key: str
    service_id: str
    kind: str  # normal | prorated | adjustment
    period_start: date
    period_end: date
    units: int
    unit_price: Decimal
    days: int
    days_in_period: int
    amount: Decimal
    change_id: str | None = None
    adjusts_line_id: str | None = None
    description: str = ""

    @property
    def line_id(self) -> str:
        return line_id(self.line_key)

    @property
    def bills_agents(self) -> bool:
        """Whether agents are behind it: a prorated line's are its change's; an adjustment that
        changes a prorated line's units (a night counted again) has the change's agents as
        corrected. An adjustment of days only (a date moved) or of a line that no longer applies
        (0 days) has none: no machine is billed or credited by it, whatever its change id."""
        if self.kind == "prorated":
            return True
        return self.kind == "adjustment" and self.change_id is not None and self.units != 0 and self.days > 0


def line_id(line_key: str) -> str:
    """Deterministic line id: re-runs and concurrent runs derive the same id from the key."""
    return "L" + hashlib.sha256(line_key.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class PostedLine:
    """A line as posted on an invoice: what the reconciliation needs of it."""

    line_id: str
    invoice_id: str
    line_key: str
    service_id: str
    kind: str
    period_start: date
    period_end: date
    units: int
    unit_price: Decimal
    days_in_period: int
    amount: Decimal
    change_id: str | None
    adjusts_line_id: str | None


def normal_key(service_id: str, month: date) -> str:
    return normal_key_prefix(service_id) + month_label(month)


def normal_key_prefix(service_id: str) -> str:
    """``normal_key`` without its month (``YYYY-MM``)."""
    return f"normal:{service_id}:"


def prorated_key(change_id: str) -> str:
    return f"prorated:{change_id}"


def adjustment_key(adjusted_line_id: str, target: str) -> str:
    """``target`` is the invoice id the adjustment is posted on, or ``pending``."""
    return f"adjustment:{adjusted_line_id}:{target}"
