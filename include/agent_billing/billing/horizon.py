"""The billing horizon (SPEC §5): the latest date a billing run may bill as of.

A run as of D is refused when D is later than today in the billing timezone, or later than
the latest snapshot date whose nightly sync has concluded: lines computed beyond either
would be permanent invoices built on units nobody has observed yet. ``run_billing`` checks
this itself, so the command line, the DAG's ``as_of`` param and asset-triggered runs share it.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Connection, Date, bindparam, text

from agent_billing.billing import store
from agent_billing.errors import UserError
from agent_billing.settings import get_settings
from agent_billing.warehouse.values import as_date


class BillingHorizonError(UserError):
    """A billing date beyond today or beyond the latest concluded nightly sync."""


def billing_today(today: date | None = None) -> date:
    """``today`` if given (tests), else today's date in the billing timezone."""
    if today is not None:
        return today
    return datetime.now(get_settings().tz).date()


def latest_concluded_date(conn: Connection) -> date | None:
    """The latest snapshot date whose nightly sync concluded (complete, gap or discarded)."""
    return conn.execute(store.query("latest_concluded")).scalar()


def billing_horizon(conn: Connection, today: date | None = None) -> date | None:
    """The latest date a run may bill as of; None when no nightly sync has concluded yet."""
    latest = latest_concluded_date(conn)
    return None if latest is None else min(latest, billing_today(today))


def check_horizon(
    conn: Connection, as_of: date, today: date | None = None, *, action: str = "bill", earliest: date | None = None
) -> None:
    """Raise ``BillingHorizonError`` unless ``as_of`` is within the billing horizon; ``action``
    names what was refused (``bill``, ``post``); ``earliest``: the first date the action takes
    (a preview: the date the contract was billed as of), so the way out it names is one."""
    latest = latest_concluded_date(conn)
    now = billing_today(today)
    if latest is None:
        raise BillingHorizonError(
            f"cannot {action} as of {as_of}: no nightly sync has concluded yet (complete, gap or "
            f"discarded); run `agent-billing sync --date {min(as_of, now)}` first"
        )
    if as_of > now:
        raise BillingHorizonError(
            f"cannot {action} as of {as_of}: it is later than today ({now}, {get_settings().timezone}); "
            f"the latest concluded sync date is {latest}"
        )
    if as_of > latest:
        raise BillingHorizonError(
            f"cannot {action} as of {as_of}: the latest concluded sync date is {latest}; "
            f"{_what_concludes(conn, latest, as_of)}, or {action} as of {_dates_taken(latest, earliest)}"
        )


def _dates_taken(latest: date, earliest: date | None) -> str:
    if earliest is None:
        return f"{latest} or earlier"
    return str(latest) if earliest >= latest else f"a date from {earliest} to {latest}"


def _what_concludes(conn: Connection, latest: date, as_of: date) -> str:
    """What would move the horizon to ``as_of``: a quarantined date waits for a person, a
    failed one for its re-run, a missing one for its sync."""
    recorded = conn.execute(
        text(
            "SELECT snapshot_date, status FROM sync_runs WHERE snapshot_date > :latest "
            "AND snapshot_date <= :as_of ORDER BY snapshot_date"
        ).bindparams(bindparam("latest", type_=Date()), bindparam("as_of", type_=Date())),
        {"latest": latest, "as_of": as_of},
    ).all()
    quarantined = [str(as_date(d)) for d, status in recorded if status == "quarantined"]
    failed = [str(as_date(d)) for d, status in recorded if status == "failed"]
    steps = []
    if quarantined:
        steps.append(
            f"{_dates(quarantined)} quarantined: release or discard it "
            f"(`agent-billing snapshots release|discard {quarantined[0]}`)"
        )
    if failed:
        steps.append(f"{_dates(failed)} failed: re-run its sync (`agent-billing sync --date {failed[0]}`)")
    if len(recorded) < (as_of - latest).days:  # nights not run at all
        steps.append(f"run the nightly sync up to {as_of}" + (" first" if not steps else ""))
    return "; ".join(steps)


def _dates(dates: list[str]) -> str:
    shown = ", ".join(dates[:3]) + (f" and {len(dates) - 3} more" if len(dates) > 3 else "")
    return f"{shown} {'is' if len(dates) == 1 else 'are'}"
