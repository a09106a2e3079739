"""Quarantine (SPEC 4.5): a snapshot that drops an org's agents sharply is held, not billed.

This guards against mass credits when the integration breaks (a narrowed API user scope
silently hides orgs). A person releases the snapshot or discards it.

A night is judged against the good night before it. When that changes (a missed night
backfilled behind nights that already ran, a night released, or re-judged), the nights after it
are judged again (``judge_later_nights``), so the verdicts end as if every night had run in
date order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import Connection, text

from agent_billing.settings import Settings
from agent_billing.sql import load_sql
from agent_billing.sync.landing import RawLanding
from agent_billing.sync.notify import queue_message
from agent_billing.sync.runs import previous_good, record_run
from agent_billing.warehouse.values import as_date


@dataclass(frozen=True)
class OrgDrop:
    org_id: str
    before: int
    after: int

    def describe(self) -> str:
        return f"org {self.org_id}: {self.before} → {self.after} agents"


@dataclass(frozen=True)
class Verdict:
    """A night judged against the good night before it (``previous``)."""

    night: date
    previous: date | None
    drops: list[OrgDrop]

    @property
    def quarantined(self) -> bool:
        return bool(self.drops)

    @property
    def message(self) -> str | None:
        if not self.drops:
            return None
        return (
            f"snapshot {self.night} quarantined: against {self.previous}, "
            + "; ".join(d.describe() for d in self.drops)
            + f". Release it (agent-billing snapshots release {self.night}) or discard it."
        )


def judge(conn: Connection, night: date, settings: Settings) -> Verdict:
    """The night against the latest complete night before it (``sync_runs`` as it stands)."""
    previous = previous_good(conn, night)
    return Verdict(night, previous, org_drops(conn, night, previous, settings))


def alert_quarantine(conn: Connection, settings: Settings, verdict: Verdict, why: str = "") -> None:
    """One message per night and the night it was judged against: a night judged again
    against another night is news, the same verdict again is not."""
    if settings.data_team:
        queue_message(
            conn, f"quarantine:{verdict.night}:{verdict.previous}", "quarantine", settings.data_team,
            f"[agent-billing] Snapshot {verdict.night} quarantined", verdict.message + why,
        )


def judge_later_nights(conn: Connection, settings: Settings, night: date) -> dict[date, str]:
    """Judge again the nights after ``night`` whose good night before it may have changed,
    oldest first; return those whose status changed (date → new status).

    Call it holding the unit-history lock, after ``night``'s status was written: every writer
    of a verdict holds that lock. A released night is never judged again; the walk stops at
    the first night that was complete and stays complete, since the nights after it are
    judged against it or later ones.
    """
    rows = conn.execute(
        text(
            "SELECT snapshot_date, status, message, released_at FROM sync_runs "
            "WHERE snapshot_date > :d AND status IN ('complete', 'quarantined') ORDER BY snapshot_date"
        ),
        {"d": night},
    ).all()
    why = f"\n\nJudged again: the good night before it changed when {night} was processed or released."
    changed: dict[date, str] = {}
    for later, status, message, released_at in rows:
        later = as_date(later)
        if released_at is not None:
            break
        verdict = judge(conn, later, settings)
        if verdict.quarantined:
            if verdict.message != message:
                record_run(conn, later, "quarantined", message=verdict.message)
                alert_quarantine(conn, settings, verdict, why)
        elif status == "complete":
            break
        else:
            complete_held(conn, settings, later, message=None)
            if settings.data_team:
                queue_message(
                    conn, f"quarantine-lifted:{later}:{verdict.previous}", "quarantine", settings.data_team,
                    f"[agent-billing] Snapshot {later} no longer quarantined",
                    f"snapshot {later} is complete: against {verdict.previous}, no org's agents dropped "
                    f"sharply. Its unit changes now count.{why}",
                )
        if (new_status := "quarantined" if verdict.quarantined else "complete") != status:
            changed[later] = new_status
    return changed


def complete_held(conn: Connection, settings: Settings, night: date, **fields) -> None:
    """A held night becomes complete without a diff of its own (a release, or judged again):
    the digest of its landing is recorded, as a diff does, to guard its later re-runs."""
    landing = RawLanding(settings.raw_path, night)
    record_run(conn, night, "complete", landing_sha256=landing.digest() if landing.exists() else None, **fields)


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
