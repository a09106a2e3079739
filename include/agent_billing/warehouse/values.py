"""Read warehouse values the same way on both engines (SQLite returns dates as text, NUMERIC as REAL)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any


def as_decimal(value: Any) -> Decimal:
    """Exact Decimal from a NUMERIC value (SQLite hands back a REAL; its shortest repr is exact)."""
    if isinstance(value, Decimal):
        return value
    if value is None:
        raise ValueError("NULL where a number was expected")
    return Decimal(str(value))


def as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def as_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def as_utc(value: Any) -> datetime:
    """An aware UTC datetime (SQLite may hand back naive text; naive values are UTC)."""
    parsed = as_datetime(value)
    if parsed is None:
        raise ValueError("NULL where a timestamp was expected")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
