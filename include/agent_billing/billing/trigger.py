"""Which dates one ``agent_billing`` DAG run bills (kept free of Airflow imports)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from agent_billing.errors import UserError
from agent_billing.sync.dates import parse_date

BILLABLE = ("complete", "discarded")
"""The nights a nightly sync hands to billing (``vsa_asset_sync``'s ``publish``, ``sync --bill``):
a quarantined night waits for a person, a gap or a failed night bills nothing."""


def billing_dates(as_of: str | None, events: Iterable[Any]) -> list[date]:
    """The ``as_of`` param if given, else every triggering asset event's ``snapshot_date``.

    Asset events coalesce: one run may carry several, in any order (backfills); the dates
    are deduplicated and sorted so that they are billed in ascending order.
    """
    if as_of:
        return [parse_date(as_of, "as_of")]
    dates = set()
    for event in events:
        snapshot_date = (getattr(event, "extra", None) or {}).get("snapshot_date")
        if not snapshot_date:
            raise UserError(f"asset event {event!r} carries no snapshot_date in its extra")
        dates.add(parse_date(snapshot_date, "snapshot_date"))
    if not dates:
        raise UserError("nothing to bill: no as_of param and no triggering asset event")
    return sorted(dates)
