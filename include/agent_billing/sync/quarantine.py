"""Quarantine (SPEC 4.5): a snapshot that drops agents sharply is held, not billed.

This guards against mass credits when the integration breaks: a narrowed API user scope
silently hides orgs, a machine group's agents are hidden, a view's filter is changed. Two
rules, with the same thresholds (``quarantine_share`` and ``quarantine_min_agents``):
- an org a service counts falls by more than the share (and at least the minimum), or to zero;
  an org no service counts is not judged (its drop bills nobody);
- a counted service falls by more than the share and at least the minimum against its count on
  the good night before, unless it leaves out offline agents (its count falls by its own rule
  when machines stay off); a service of a few agents going to zero is a customer's ordinary
  offboarding, a whole org going is not.
A person releases the snapshot or discards it.

A night is judged against the good night before it. When that changes (a missed night
backfilled behind nights that already ran, a night released, or re-judged), the nights after it
are judged again (``judge_later_nights``), so the verdicts end as if every night had run in
date order.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal

from sqlalchemy import Connection, text

from agent_billing.settings import Settings
from agent_billing.sql import load_sql
from agent_billing.sync.landing import RawLanding
from agent_billing.sync.notify import queue_message, was_sent, withdraw_unsent
from agent_billing.sync.runs import previous_good, record_run
from agent_billing.warehouse.values import as_date


@dataclass(frozen=True)
class Drop:
    """An org's or a counted service's agents, the good night before and the judged night."""

    kind: str  # "org" or "service"
    id: str
    before: int
    after: int
    name: str = ""  # the org's accounts or the service's name, for the person who judges it

    def describe(self) -> str:
        named = f" ({self.name})" if self.name else ""
        return f"{self.kind} {self.id}{named}: {self.before} → {self.after} agents"


@dataclass(frozen=True)
class Verdict:
    """A night judged against the good night before it (``previous``)."""

    night: date
    previous: date | None
    drops: list[Drop]

    @property
    def quarantined(self) -> bool:
        return bool(self.drops)

    @property
    def message(self) -> str | None:
        if not self.drops:
            return None
        return (
            f"snapshot {self.night} quarantined: against {self.previous}, "
            + "; ".join(d.describe() for d in self.drops) + "." + _asked(self.night)
        )


def _asked(night: date) -> str:
    """What a quarantined night's message asks of a person (dropped once they decided)."""
    return f" Release it (agent-billing snapshots release {night}) or discard it."


RELEASED, DISCARDED = "released after quarantine: ", "discarded after quarantine: "


def decided(how: str, message: str, night: date) -> str:
    """The message of a night a person released or discarded (``how``: ``RELEASED`` or
    ``DISCARDED``): why it was held, without the question they answered."""
    return how + message.removesuffix(_asked(night))


def judge(conn: Connection, night: date, settings: Settings) -> Verdict:
    """The night against the latest complete night before it (``sync_runs`` as it stands)."""
    previous = previous_good(conn, night)
    if previous is None:
        return Verdict(night, None, [])
    counted = conn.execute(load_sql("sync/agent_counted_services.sql"), {"snapshot_date": night}).all()
    orgs = org_drops(conn, night, previous, settings, {row.vsa_org_id for row in counted})
    held = {drop.id for drop in orgs}  # a service of a held org says nothing more
    judged = {  # a service leaving out agents offline for N days drops by its own rule (a holiday)
        row.service_id for row in counted if row.vsa_org_id not in held and row.exclude_offline_days is None
    }
    return Verdict(night, previous, _named(conn, orgs + service_drops(conn, night, previous, settings, judged)))


def _named(conn: Connection, drops: list[Drop]) -> list[Drop]:
    """The drops with the names a person knows them by: an org by its accounts, a service by its own."""
    if not drops:
        return drops
    names: dict[tuple[str, str], list[str]] = {}
    for kind, key, name in conn.execute(text(
        "SELECT 'org', vsa_org_id, name FROM accounts UNION ALL SELECT 'service', service_id, name FROM services"
    )):
        names.setdefault((kind, key), []).append(name)
    return [replace(d, name=", ".join(sorted(names.get((d.kind, d.id), [])))) for d in drops]


def alert_quarantine(conn: Connection, settings: Settings, verdict: Verdict, why: str = "") -> None:
    """One message per night and the night it was judged against: a night judged again
    against another night is news, the same verdict again is not. The night's earlier alerts
    not sent yet are withdrawn: this one replaces them."""
    message_id = f"quarantine:{verdict.night}:{verdict.previous}"
    withdraw_quarantine_alerts(conn, verdict.night, keep=message_id)
    if settings.data_team:
        queue_message(
            conn, message_id, "quarantine", settings.data_team,
            f"[agent-billing] Snapshot {verdict.night} quarantined", verdict.message + why,
        )


def withdraw_quarantine_alerts(conn: Connection, night: date, keep: str = "") -> None:
    """Withdraw the night's quarantine alerts (and those saying it was lifted) not sent yet, but
    ``keep``: the night is no longer held as they say (released, discarded, judged complete, or
    held against another night)."""
    for kind in ("quarantine", "quarantine-lifted"):
        withdraw_unsent(conn, f"{kind}:{night}:%", keep=[keep])


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
            if settings.data_team and was_sent(conn, f"quarantine:{later}:%"):  # else nothing to take back
                queue_message(
                    conn, f"quarantine-lifted:{later}:{verdict.previous}", "quarantine", settings.data_team,
                    f"[agent-billing] Snapshot {later} no longer quarantined",
                    f"snapshot {later} is complete: against {verdict.previous}, no org's or service's agents "
                    f"dropped sharply. Its unit changes now count.{why}",
                )
        if (new_status := "quarantined" if verdict.quarantined else "complete") != status:
            changed[later] = new_status
    return changed


def complete_held(conn: Connection, settings: Settings, night: date, **fields) -> None:
    """A held night becomes complete without a diff of its own (a release, or judged again):
    the digest of its landing is recorded, as a diff does, to guard its later re-runs."""
    landing = RawLanding(settings.raw_path, night)
    record_run(conn, night, "complete", landing_sha256=landing.digest() if landing.exists() else None, **fields)
    withdraw_quarantine_alerts(conn, night)


def org_drops(
    conn: Connection, snapshot_date: date, previous_date: date, settings: Settings, counted: set[str]
) -> list[Drop]:
    """The ``counted`` orgs (a service counts them on the night) whose agents fall by more than
    the configured share (and at least the configured number of agents), or to zero, against
    the previous good snapshot."""
    before = _org_counts(conn, previous_date)
    after = _org_counts(conn, snapshot_date)
    return [
        Drop("org", org_id, was, now)
        for org_id, was in sorted(before.items())
        if org_id in counted and was > 0
        and ((now := after.get(org_id, 0)) == 0 or _sharp(was - now, was, settings))
    ]


def service_drops(
    conn: Connection, snapshot_date: date, previous_date: date, settings: Settings, judged: set[str]
) -> list[Drop]:
    """The ``judged`` services whose count falls by more than the configured share and at least
    the configured number of agents against the good night before (a scope that stopped seeing
    most of its agents while its org did not: a hidden machine group, a view whose filter
    changed). Counts only, as the org rule: a verdict must not depend on when a Get Units Now
    press was recorded (a press between the nights would lift a hold that a press recorded
    after them does not: the nights' verdicts would follow the order work was done in)."""
    before = _service_counts(conn, previous_date)
    after = _service_counts(conn, snapshot_date)
    return [
        Drop("service", service_id, was, after[service_id])
        for service_id, was in sorted(before.items())
        if service_id in judged and service_id in after and _sharp(was - after[service_id], was, settings)
    ]


def _sharp(fell: int, was: int, settings: Settings) -> bool:
    return fell >= settings.quarantine_min_agents and Decimal(fell) > settings.quarantine_share * was


def _org_counts(conn: Connection, snapshot_date: date) -> dict[str, int]:
    rows = conn.execute(load_sql("sync/org_agent_counts.sql"), {"snapshot_date": snapshot_date})
    return {org_id: int(n) for org_id, n in rows if org_id is not None}


def _service_counts(conn: Connection, snapshot_date: date) -> dict[str, int]:
    rows = conn.execute(text("SELECT service_id, units FROM service_unit_counts WHERE snapshot_date = :d"),
                        {"d": snapshot_date})
    return {service_id: int(units) for service_id, units in rows}
