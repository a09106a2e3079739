"""Quarantine (SPEC 4.5): a snapshot that drops an org's agents sharply is held, not billed.

This guards against mass credits when the integration breaks (a narrowed API user scope
silently hides orgs). A person releases the snapshot or discards it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import Connection

from agent_billing.settings import Settings
from agent_billing.sql import load_sql


@dataclass(frozen=True)
class OrgDrop:
    org_id: str
    before: int
    after: int

    def describe(self) -> str:
        return f"org {self.org_id}: {self.before} → {self.after} agents"


def org_drops(
    conn: Connection, snapshot_date: date, previous_date: date | None, settings: Settings
) -> list[OrgDrop]:
    """Orgs whose agent count falls by more than the configured share (and at least the
    configured number of agents), or to zero, against the previous good snapshot."""
    if previous_date is None:
        return []
    before = _org_counts(conn, previous_date)
    after = _org_counts(conn, snapshot_date)
    drops = []
    for org_id, was in sorted(before.items()):
        now = after.get(org_id, 0)
        fell = was - now
        if was > 0 and (
            now == 0
            or (fell >= settings.quarantine_min_agents and Decimal(fell) > settings.quarantine_share * was)
        ):
            drops.append(OrgDrop(org_id, was, now))
    return drops


def _org_counts(conn: Connection, snapshot_date: date) -> dict[str, int]:
    rows = conn.execute(load_sql("sync/org_agent_counts.sql"), {"snapshot_date": snapshot_date})
    return {org_id: int(n) for org_id, n in rows if org_id is not None}
