"""Calendar months (identified by their first day) and a contract's invoice dates."""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from datetime import date, timedelta
from functools import cache

from agent_billing.errors import UserError


def month_start(day: date) -> date:
    return day.replace(day=1)


def days_in_month(month: date) -> int:
    return _days_in_month(month.year, month.month)


@cache
def _days_in_month(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def month_end(month: date) -> date:
    return month.replace(day=days_in_month(month))


def next_month(month: date) -> date:
    return month_end(month) + timedelta(days=1)


def previous_month(month: date) -> date:
    return month_start(month - timedelta(days=1))


def months(first: date, last: date) -> Iterator[date]:
    """First days of the months from ``first``'s month to ``last``'s month, inclusive."""
    month, stop = month_start(first), month_start(last)
    while month <= stop:
        yield month
        month = next_month(month)


def month_label(month: date) -> str:
    return f"{month.year:04}-{month.month:02}"


def invoice_date(month: date, billing_day: int, contract_start: date) -> date:
    """Day ``billing_day`` of ``month``, or the contract start if that is later (first month)."""
    return max(month.replace(day=billing_day), contract_start)


def billing_month(as_of: date, billing_day: int, contract_start: date) -> date | None:
    """The latest month whose invoice date is on or before ``as_of`` (None before the first)."""
    month = month_start(as_of)
    if invoice_date(month, billing_day, contract_start) > as_of:
        month = previous_month(month)
    return month if month >= month_start(contract_start) else None


def parse_month(value: str, what: str = "month") -> date:
    """``YYYY-MM`` as the month's first day (exactly that shape, spaces around it aside, as the
    contracts file's dates)."""
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}", value := value.strip()):
        raise UserError(f"invalid {what} {value!r}: expected YYYY-MM")
    year, month = value.split("-")
    if not 1 <= int(month) <= 12:
        raise UserError(f"invalid {what} {value!r}: there is no month {month} (01 to 12)")
    try:
        return date(int(year), int(month), 1)
    except ValueError:
        raise UserError(f"invalid {what} {value!r}: there is no year {year}") from None
