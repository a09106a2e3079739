"""When a night without a landing becomes a gap (SPEC §4.6), and the nights no run ever took.

Airflow runs only the latest slot after a stopped scheduler or a paused DAG (``catchup`` is
off), so the nights in between get no run, no row in ``sync_runs`` and no alert: billing then
carries the units over them as over a gap, with nobody told. The extract of the next night
records those older than the grace window as the gaps their own runs would record, and mails
the data team which nights to run.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine, text

from agent_billing.settings import MailSettings, Settings
from agent_billing.sync.dates import date_runs, is_late, late_after
from agent_billing.sync.landing import RawLanding
from agent_billing.sync.notify import queue_message
from agent_billing.warehouse.values import as_date

log = logging.getLogger(__name__)


def gap_warning(settings: MailSettings, snapshot_date: date) -> str | None:
    """By when a night left without a landing (its extract failed) must be run again: after that
    moment, in the billing timezone, a run records it as a gap (``extract_step``). None when late
    observations are allowed; the rule alone when only the mail settings could be read."""
    if not isinstance(settings, Settings):
        moment = "AGENT_BILLING_LATE_GRACE_HOURS after the night's midnight"
    elif settings.late_observation != "refuse":
        return None
    else:  # through UTC: a time that a clock change skips or repeats is named as the clock shows it
        late = late_after(snapshot_date, settings.tz, settings.late_grace_hours).astimezone(UTC).astimezone(settings.tz)
        repeated = late.replace(fold=1 - late.fold).utcoffset() != late.utcoffset()
        moment = f"{late:%Y-%m-%d %H:%M} {settings.timezone}" + (f" (UTC{late:%z})" if repeated else "")
    return f"before {moment}: later, with no landing, the night becomes a gap"


def record_missed_nights(engine: Engine, settings: Settings, snapshot_date: date, now: datetime) -> list[date]:
    """The nights before ``snapshot_date``, since the first complete one, that no run took. Those
    after the latest night that has a run are found now; the others were found before (named by
    an earlier run's mail, or missed before this check existed) and still not run. With ``LATE_OBSERVATION=refuse``, those past the grace window with no
    landing are recorded as gaps, as their own runs would record them (a run of one later, from
    a restored landing, still fills it): a night named as still in time and then left is
    recorded by the first run after its grace window. One mail to the data team names the
    nights found now, the gaps recorded and the nights left to run. Returns the nights recorded
    as gaps."""
    with engine.begin() as conn:
        first = conn.execute(text(
            "SELECT MIN(snapshot_date) FROM sync_runs WHERE status = 'complete' AND snapshot_date < :d"),
            {"d": snapshot_date}).scalar()
        if first is None:  # a first night, or only trial runs before it: nothing to catch up
            return []
        first = as_date(first)
        ran = {as_date(d) for d in conn.execute(text(  # a date per row: one a night, a year is 365
            "SELECT snapshot_date FROM sync_runs WHERE snapshot_date > :first AND snapshot_date < :d"),
            {"first": first, "d": snapshot_date}).scalars()}
        previous = max(ran, default=first)
        unrun = [night for k in range(1, (snapshot_date - first).days)
                 if (night := first + timedelta(days=k)) not in ran]
        # each night's lateness and landing read once (a file system check per night)
        late = {night for night in unrun if is_late(night, now, settings.tz, settings.late_grace_hours)}
        landed = {night for night in unrun if RawLanding(settings.raw_path, night).exists()}
        refuse = settings.late_observation == "refuse"
        gaps = [night for night in unrun if refuse and night in late and night not in landed]
        found = [night for night in unrun if night > previous]  # the others were mailed by the run that found them
        if not found and not gaps:
            return []
        for night in gaps:  # never over a row a run of that night wrote meanwhile
            conn.execute(text(
                "INSERT INTO sync_runs (snapshot_date, status, message, updated_at) VALUES (:d, 'gap', :m, :now) "
                "ON CONFLICT (snapshot_date) DO NOTHING"), {"d": night, "m": _gap_message(settings, snapshot_date),
                                                           "now": datetime.now(UTC)})
        to_run = [night for night in found if night not in gaps]
        in_time = [night for night in to_run if night not in late and night not in landed]  # may turn into gaps
        named = sorted(set(found) | set(gaps))
        body = _missed_in_words(settings, snapshot_date, found, gaps, to_run, in_time)
        if settings.data_team:  # one mail per run of a night, and one more per gaps a retry of it records
            head = f"missed:{snapshot_date}"
            told = conn.execute(text("SELECT 1 FROM notification_outbox WHERE message_id = :id"), {"id": head}).first()
            queue_message(conn, f"{head}:gaps:{gaps[0]}" if gaps and told else head, "gap", settings.data_team,
                          f"[agent-billing] Nights never run before {snapshot_date}: {date_runs(named)}", body,
                          refresh=False)  # a re-run's finds fewer
    log.warning(body)
    return gaps


def _gap_message(settings: Settings, found_by: date) -> str:
    return (f"never run (found by the run of {found_by}: a stopped scheduler or a paused DAG, whose missed "
            f"nights Airflow does not run) and more than {settings.late_grace_hours} h old: VSA only reports its "
            "present state, so this date is recorded as a gap; the next good snapshot carries the change on its "
            "own date (set AGENT_BILLING_LATE_OBSERVATION=allow and run it to take the present state as this "
            "date's)")


def _missed_in_words(settings: Settings, found_by: date, found: list[date], gaps: list[date],
                     to_run: list[date], in_time: list[date]) -> str:
    lines = []
    if found:
        lines.append(f"No run took the nights {date_runs(found)} (found by the run of {found_by}: a stopped "
                     "scheduler or a paused DAG; Airflow does not run the nights it missed).")
    if earlier := [night for night in gaps if night not in found]:
        lines.append(f"Older nights no run took, still without one when the run of {found_by} looked again: "
                     f"{date_runs(earlier)}.")
    if gaps:
        lines.append(f"Recorded as gaps, being more than {settings.late_grace_hours} h old with no landing: "
                     f"{date_runs(gaps)}. The next good snapshot carries any change on its own date.")
    if to_run:
        deadline = gap_warning(settings, in_time[0]) if in_time else None  # the first to turn into a gap
        if settings.late_observation == "allow":
            lines.append("LATE_OBSERVATION=allow: a night without a landing run now records VSA's present state as "
                         "that night's, so a change made since is billed from that night on; run those only if "
                         "nothing changed, or leave them (unobserved, the next good night carries the change).")
        lines.append(
            f"Run {date_runs(to_run)}{' (' + deadline + ')' if deadline else ''}: `agent-billing sync --date "
            f"{to_run[0]}` for each, or an Airflow backfill from {to_run[0]} to {to_run[-1]} (docs/runbook.md, "
            "'Backfill a missed night': bounds with the billing timezone's offset, --max-active-runs 1).")
    return "\n".join(lines)
