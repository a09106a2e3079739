"""Snapshot dates: the local date (billing timezone) of a run's logical date (SPEC 8)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from agent_billing.errors import UserError


def parse_date(value: str | date, what: str = "date") -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise UserError(f"invalid {what} {value!r}: expected YYYY-MM-DD") from None


def snapshot_date_for(logical_date: datetime, tz: ZoneInfo) -> date:
    """The billing-local date of a logical date (Airflow 3: the cron trigger time)."""
    return logical_date.astimezone(tz).date()


def is_late(snapshot_date: date, now: datetime, tz: ZoneInfo, grace_hours: int) -> bool:
    """True when the date's local midnight is more than the grace window in the past."""
    start = datetime.combine(snapshot_date, time.min, tzinfo=tz)
    return now - start > timedelta(hours=grace_hours)
