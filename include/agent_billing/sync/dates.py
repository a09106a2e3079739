"""Snapshot dates: the local date (billing timezone) of a run's logical date (SPEC 8)."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from agent_billing.errors import UserError

#: Dates a user may give: a typo such as 0001-01-31 would otherwise reach date arithmetic
#: that leaves the calendar (an OverflowError per contract) or record a gap for year 1.
EARLIEST, LATEST = date(1900, 1, 1), date(9998, 12, 31)
#: What a date out of that range is told (the command line's dates, the contracts file's).
DATE_RANGE = f"expected a date from {EARLIEST} to {LATEST}"


def within_range(value: date) -> bool:
    return EARLIEST <= value <= LATEST


def parse_date(value: str | date, what: str = "date") -> date:
    if isinstance(value, datetime):
        parsed = value.date()
    elif isinstance(value, date):
        parsed = value
    else:
        text = str(value).strip()
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):  # fromisoformat also takes 20250101, 2025-W01-1
            raise UserError(f"invalid {what} {value!r}: expected YYYY-MM-DD")
        try:
            parsed = date.fromisoformat(text)
        except ValueError as e:  # the right shape but no such day (2024-02-30): say so
            raise UserError(f"invalid {what} {value!r}: {e}") from None
    if not within_range(parsed):
        raise UserError(f"invalid {what} {value!s}: {DATE_RANGE}")
    return parsed


def snapshot_date_for(logical_date: datetime, tz: ZoneInfo) -> date:
    """The billing-local date of a logical date (Airflow 3: the cron trigger time)."""
    return logical_date.astimezone(tz).date()


def refuse_future(snapshot_date: date, now: datetime, tz: ZoneInfo) -> None:
    """A date after today (billing timezone) is an input error, refused before anything is
    written: VSA cannot report it yet."""
    today = now.astimezone(tz).date()
    if snapshot_date > today:
        raise UserError(
            f"snapshot date {snapshot_date} is in the future (today is {today} in {tz.key}); "
            "VSA cannot report it yet"
        )


def late_after(snapshot_date: date, tz: ZoneInfo, grace_hours: int) -> datetime:
    """When the date becomes late: its local midnight plus the grace window (after it, a night
    without a landing is a gap unless late observations are allowed)."""
    return datetime.combine(snapshot_date, time.min, tzinfo=tz) + timedelta(hours=grace_hours)


def is_late(snapshot_date: date, now: datetime, tz: ZoneInfo, grace_hours: int) -> bool:
    """True when the date's local midnight is more than the grace window in the past."""
    return now > late_after(snapshot_date, tz, grace_hours)


def date_runs(dates: list[date]) -> str:
    """Sorted dates as runs of consecutive days: ``2024-03-01 to 2024-03-02, 2024-03-05``."""
    runs: list[list[date]] = []
    for d in dates:
        if runs and d - runs[-1][-1] == timedelta(days=1):
            runs[-1].append(d)
        else:
            runs.append([d])
    return ", ".join(f"{r[0]}" if len(r) == 1 else f"{r[0]} to {r[-1]}" for r in runs)
