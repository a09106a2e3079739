"""The nightly sync, one function per step (SPEC 2); the DAG and ``agent-billing sync`` wire them.

extract (land raw) → load snapshot → quality gate → count units → diff into unit changes
(or quarantine) → notify. Every step is idempotent for its date and transactional.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from agent_billing.errors import UserError
from agent_billing.settings import MailSettings, Settings
from agent_billing.sync import changes
from agent_billing.sync.dates import is_late, refuse_future
from agent_billing.sync.extract import VsaClientLike, land_from_vsa
from agent_billing.sync.gaps import gap_warning, record_missed_nights
from agent_billing.sync.landing import RawLanding, remove_stale_staging
from agent_billing.sync.load import load_snapshot
from agent_billing.sync.notify import (
    queue_failure_alert,
    queue_mail_for,
    queue_message,
    withdraw_unsent,
)
from agent_billing.sync.quarantine import (
    DISCARDED,
    RELEASED,
    alert_quarantine,
    complete_held,
    decided,
    judge,
    judge_later_nights,
    withdraw_quarantine_alerts,
)
from agent_billing.sync.runs import (
    get_run,
    lock_snapshot_date,
    record_run,
    status_after_failure,
)
from agent_billing.sync.scopes import report_scopes
from agent_billing.sync.snapshot_history import forget_night, prune_staging
from agent_billing.warehouse.errors import failure_text
from agent_billing.warehouse.staging import mark_settled, stage_of
from agent_billing.warehouse.values import as_date

log = logging.getLogger(__name__)


class SnapshotStatusError(UserError):
    """A release or discard was asked for a date in the wrong state."""


class StagingMissing(UserError):
    """A gate or count was asked for a date whose staging is not there (never loaded, or dropped)."""


class KeptLandingMissing(UserError):
    """The raw landing of a complete or quarantined date is gone: such a date holds counts
    observed on it and is never re-extracted from VSA's present state."""


class CompleteLandingChanged(UserError):
    """A complete date's raw landing is not the one it was loaded from."""


@dataclass(frozen=True)
class StepResult:
    snapshot_date: str
    status: str  # landed | reused | gap | loaded | validated | counted | complete | quarantined | discarded
    detail: dict[str, Any]

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)


class RawFolderMissing(UserError):
    """The raw folder is not where the landings are: absent, or holding none of the landings
    the warehouse was loaded from (a volume that is not mounted)."""


def refuse_missing_raw_folder(engine: Engine, root: Path, refused: str = "nothing was extracted") -> None:
    """A new landing is written only where the warehouse's landings are. Once a night was
    landed, a raw folder that is absent or holds no landing is a volume that is not mounted
    (an image's own empty folder, a mount point's bare directory): a night landed there goes
    with its container or node, and no restore, recount or re-run would find it; nor can a
    machine without the volume tell which landings are kept. ``refused``: what was not done."""
    if root.exists() and (not root.is_dir() or any(root.glob("????-??-??"))):
        return  # landings are there (or a file is in its place: the landing names it)
    with engine.connect() as conn:
        latest = conn.execute(text(
            "SELECT MAX(snapshot_date) FROM sync_runs WHERE status IN ('complete', 'quarantined')"
        )).scalar()
    if latest is not None:
        raise RawFolderMissing(
            f"the raw landing folder {root} {'holds no landing' if root.exists() else 'does not exist'}, but the "
            f"warehouse has nights synced up to {as_date(latest)}: is the raw volume mounted there? "
            "(AGENT_BILLING_RAW_PATH; docs/deployment.md, 'The raw landing volume must be shared by every "
            f"worker'); {refused}"
        )


def gap_alert_id(snapshot_date: date) -> str:
    return f"gap:{snapshot_date}"


def landing_for(settings: Settings, snapshot_date: date) -> RawLanding:
    return RawLanding(settings.raw_path, snapshot_date)


def discarded(conn, snapshot_date: date) -> StepResult | None:
    """A night a person discarded stays discarded: a re-run of it (a backfill that reprocesses
    completed runs, a cleared task) does nothing until a person reopens it."""
    run = get_run(conn, snapshot_date)
    if run is None or run["status"] != "discarded":
        return None
    message = (f"snapshot {snapshot_date} was discarded by a person: not taken up again "
               f"(agent-billing snapshots reopen {snapshot_date}, then run it again)")
    log.warning(message)
    return StepResult(snapshot_date.isoformat(), "discarded", {"message": message})


def extract_step(
    engine: Engine,
    settings: Settings,
    snapshot_date: date,
    client_factory: Callable[[], VsaClientLike],
    *,
    now: datetime | None = None,
) -> StepResult:
    """Land the date's raw extract unless it exists; refuse (gap) to observe an old date late."""
    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        if held := discarded(conn, snapshot_date):
            return held
    landing = landing_for(settings, snapshot_date)
    remove_stale_staging(landing.root)  # of any date: a killed extract's folder is not this date's business only
    if landing.exists():
        manifest = landing.verify()
        log.info("raw landing for %s exists (%s): reprocessing it, VSA not called", snapshot_date, landing.path)
        missed = record_missed_nights(engine, settings, snapshot_date, now)
        return StepResult(snapshot_date.isoformat(), "reused",
                          {"observed_at": manifest["observed_at"], "gaps_recorded_before": _iso(missed)})
    # Before anything is concluded from the landing's absence (restore it, a gap, extract now):
    # on a volume that is not mounted every landing is absent.
    refuse_missing_raw_folder(engine, Path(landing.root))
    with engine.connect() as conn:
        run = get_run(conn, snapshot_date)
    if run and run["status"] in ("complete", "quarantined"):
        # VSA reports only its present state: extracting now would rewrite a posted past, or
        # replace the night a person is asked to judge (or make it a gap) behind their back.
        held = (
            f"; or decide on it as it is: agent-billing snapshots release|discard {snapshot_date}"
            if run["status"] == "quarantined" else ""
        )
        raise KeptLandingMissing(
            f"snapshot {snapshot_date} is {run['status']} but its raw landing {landing.path} is missing: "
            "restore it from the backup of the raw folder and re-run (docs/runbook.md, 'When "
            f"something breaks'){held}; such a date is never re-extracted from VSA's present state"
        )
    refuse_future(snapshot_date, now, settings.tz)
    missed = record_missed_nights(engine, settings, snapshot_date, now)
    late = is_late(snapshot_date, now, settings.tz, settings.late_grace_hours)
    if late and settings.late_observation == "refuse":
        message = (
            f"no raw extract for {snapshot_date} and it is more than {settings.late_grace_hours} h old: "
            "VSA only reports its present state, so this date is recorded as a gap; the next good "
            "snapshot carries the change on its own date (set AGENT_BILLING_LATE_OBSERVATION=allow "
            "to take the present state as this date's)"
        )
        with engine.begin() as conn:
            record_run(conn, snapshot_date, "gap", message=message)
            mark_settled(conn, snapshot_date)  # a failed night's staging, if any: never merged now
            if settings.data_team:
                queue_message(
                    conn, gap_alert_id(snapshot_date), "gap", settings.data_team,
                    f"[agent-billing] Snapshot {snapshot_date} recorded as a gap", message,
                )
        log.warning(message)
        return StepResult(snapshot_date.isoformat(), "gap", {"message": message, "gaps_recorded_before": _iso(missed)})
    views = active_view_ids(engine, snapshot_date)
    client = client_factory()
    try:
        manifest = land_from_vsa(client, landing, views, observed_at=now, late_observation=late)
    finally:
        client.close()
    return StepResult(snapshot_date.isoformat(), "landed", {"observed_at": manifest["observed_at"], "views": views,
                                                            "gaps_recorded_before": _iso(missed)})


def _iso(nights: list[date]) -> list[str]:
    return [night.isoformat() for night in nights]


def active_view_ids(engine: Engine, snapshot_date: date) -> list[str]:
    """The views the night extracts: those of the services active on the date by their own
    dates, whatever their contract's (more than the count needs: a contract's dates corrected
    later leave nights to recount, and a re-run reads this landing again)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT DISTINCT vsa_view_id FROM services WHERE units_source = 'rmm_agent_count' "
                "AND vsa_view_id IS NOT NULL AND start_date <= :d AND (end_date IS NULL OR end_date >= :d)"
            ),
            {"d": snapshot_date},
        )
        return sorted(r[0] for r in rows)


def load_step(engine: Engine, settings: Settings, snapshot_date: date) -> StepResult:
    """Load the date's landing. A complete date is only ever replaced by a new load of the
    landing it was loaded from: a changed landing is refused before anything is written."""
    landing = landing_for(settings, snapshot_date)
    with engine.connect() as conn:
        if held := discarded(conn, snapshot_date):
            return held
        run = get_run(conn, snapshot_date)
    loaded_from = (run or {}).get("landing_sha256")
    if run and run["status"] == "complete" and loaded_from and landing.exists() and landing.digest() != loaded_from:
        raise CompleteLandingChanged(
            f"snapshot {snapshot_date} is complete but its raw landing {landing.path} is not the one it "
            "was loaded from (its manifest changed): landings are immutable; restore the original "
            "from the backup of the raw folder (docs/runbook.md, 'When something breaks')"
        )
    result = load_snapshot(engine, landing)
    return StepResult(snapshot_date.isoformat(), "loaded", asdict(result) | {"snapshot_date": str(snapshot_date)})


def validate_step(engine: Engine, settings: Settings, snapshot_date: date) -> StepResult:
    from agent_billing.quality.snapshot_gate import QualityGateFailed, validate_snapshot

    with engine.connect() as conn:
        if held := discarded(conn, snapshot_date):
            return held
        require_staging(conn, settings, snapshot_date, "check")
    landing = landing_for(settings, snapshot_date)
    try:
        results = validate_snapshot(engine, landing, settings.online_codes_added)
    except QualityGateFailed as exc:
        with engine.begin() as conn:
            # A complete date keeps its status and data: the failed load never reached them.
            _record_failed(conn, snapshot_date, str(exc))
            if settings.data_team:
                # one alert per landing: the same extract fails the same way on every re-run,
                # a new extract (the old one moved aside) failing again is news
                queue_message(
                    conn, f"quality:{snapshot_date}:{landing.digest()[:12]}", "quality", settings.data_team,
                    f"[agent-billing] Snapshot {snapshot_date} failed its quality gate", str(exc),
                )
        raise
    return StepResult(snapshot_date.isoformat(), "validated", {"expectations": len(results)})


def count_step(engine: Engine, settings: Settings, snapshot_date: date) -> StepResult:
    with engine.begin() as conn:
        lock_snapshot_date(conn, snapshot_date)
        # The merges read the merged dates around this one: counts of other dates (a backfill
        # runs several at once) wait, or each would miss the other's date (lock order as the diff).
        changes.lock_unit_history(conn)
        if held := discarded(conn, snapshot_date):
            return held
        require_staging(conn, settings, snapshot_date, "count")
        landed_views = {
            name.removeprefix("agents_in_view/").removesuffix(".jsonl.gz")
            for name in landing_for(settings, snapshot_date).manifest()["files"] if name.startswith("agents_in_view/")
        }
        result = changes.count_units(conn, snapshot_date, landed_views)  # merges the night first
        queued = 0
        if (get_run(conn, snapshot_date) or {}).get("status") == "complete":
            # A re-run (services may have been added, or their dates changed, since): the date's
            # changes follow its new counts in this transaction, so billing never reads new counts
            # beside changes derived from the old ones (their mail is queued here: the diff finds it).
            queued = queue_mail_for(conn, changes.rederive_from(conn, snapshot_date, settings.tz).moved)
    prune_staging(engine, snapshot_date, settings.snapshot_retention_days)
    return StepResult(snapshot_date.isoformat(), "counted",
                      {"services": result.services, "units": result.units, "mail_queued": queued})


def require_staging(conn, settings: Settings, snapshot_date: date, action: str) -> None:
    """Refuse to check or count a date whose staging is not there: the gate would fail on no rows,
    and a count would merge an empty night into the histories."""
    stage = stage_of(conn, snapshot_date)
    if stage is None:
        raise StagingMissing(
            f"snapshot {snapshot_date} has not been loaded: nothing to {action}; run the night from its "
            f"load (agent-billing sync --date {snapshot_date})"
        )
    if stage == "dropped":
        raise StagingMissing(
            f"snapshot {snapshot_date}'s staging was dropped by the retention "
            f"(AGENT_BILLING_SNAPSHOT_RETENTION_DAYS={settings.snapshot_retention_days}): nothing to {action}; "
            f"re-run the night from its load (agent-billing sync --date {snapshot_date}, or clear its load task)"
        )


def diff_step(engine: Engine, settings: Settings, snapshot_date: date) -> StepResult:
    """Complete the snapshot (or quarantine it), judge the nights after it again, and re-derive
    unit changes from this date on."""
    with engine.begin() as conn:
        lock_snapshot_date(conn, snapshot_date)
        changes.lock_unit_history(conn)  # read the neighbours only once no one else moves them
        if held := discarded(conn, snapshot_date):
            return held
        observed_at = datetime.fromisoformat(landing_for(settings, snapshot_date).manifest()["observed_at"])
        totals = _snapshot_totals(conn, snapshot_date)
        scopes = report_scopes(conn, snapshot_date, settings.data_team)
        stored_scopes = {key: json.dumps(messages) for key, messages in scopes.items()}
        existing = get_run(conn, snapshot_date) or {}
        verdict = None if existing.get("released_at") else judge(conn, snapshot_date, settings)
        if verdict is not None and verdict.quarantined:
            record_run(conn, snapshot_date, "quarantined", observed_at=observed_at, message=verdict.message,
                       **stored_scopes, **totals)
            alert_quarantine(conn, settings, verdict)
            log.warning(verdict.message)
        else:
            # a released night run again keeps why it was held and released (finance reads it),
            # not an error a failed re-run left in the message
            kept = existing.get("message") or ""
            message = kept if existing.get("released_at") and kept.startswith(RELEASED) else None
            record_run(conn, snapshot_date, "complete", observed_at=observed_at, message=message,
                       landing_sha256=landing_for(settings, snapshot_date).digest(), **stored_scopes, **totals)
            withdraw_quarantine_alerts(conn, snapshot_date)  # held before (a discard reopened): no longer
        withdraw_unsent(conn, gap_alert_id(snapshot_date))  # a gap since filled: no longer a gap
        found, queued, rejudged = _after_verdict(conn, settings, snapshot_date)
    if verdict is not None and verdict.quarantined:
        return StepResult(snapshot_date.isoformat(), "quarantined",
                          {"message": verdict.message, "rejudged": rejudged, **scopes, **totals})
    for line in scopes["scope_problems"]:
        log.warning(line)
    return StepResult(
        snapshot_date.isoformat(), "complete",
        {"unit_changes": len(found), "mail_queued": queued, "rejudged": rejudged, **scopes, **totals},
    )


def _after_verdict(conn, settings: Settings, snapshot_date: date) -> tuple[list, int, dict[str, str]]:
    """Once a date's status changed: the nights after it are judged again, the unit changes are
    re-derived from the date through the last night whose status changed, and their mail queued.
    Returns the date's changes, the messages queued and the re-judged nights (date → status)."""
    rejudged = judge_later_nights(conn, settings, snapshot_date)
    for night, status in rejudged.items():  # a hold is a warning, its end is not
        log.log(logging.WARNING if status == "quarantined" else logging.INFO,
                "snapshot %s judged again after %s: now %s", night, snapshot_date, status)
    found = changes.rederive_from(conn, snapshot_date, settings.tz, through=max(rejudged, default=None))
    queued = queue_mail_for(conn, found.moved, nights=(snapshot_date, *rejudged))
    return found.changes, queued, {night.isoformat(): status for night, status in rejudged.items()}


def _snapshot_totals(conn, snapshot_date: date) -> dict[str, int]:
    """Rows of the date: agents from the interval history (its staging may be pruned when an
    old date's diff is re-run), orgs and groups from their per-date tables."""
    counts = {
        "agents_total": int(conn.execute(
            text("SELECT COUNT(*) FROM vsa_agent_history WHERE valid_from <= :d AND (valid_to IS NULL OR valid_to > :d)"),
            {"d": snapshot_date},
        ).scalar_one())
    }
    for key, table in (("orgs_total", "vsa_orgs"), ("machine_groups_total", "vsa_machine_groups")):
        counts[key] = int(
            conn.execute(text(f"SELECT COUNT(*) FROM {table} WHERE snapshot_date = :d"), {"d": snapshot_date}).scalar_one()
        )
    return counts


def _run_in(conn, snapshot_date: date, status: str, action: str) -> dict:
    """The date's sync run, which must have ``status`` for a person to ``action`` it."""
    run = get_run(conn, snapshot_date)
    if run is None or run["status"] != status:
        now = run["status"] if run else "unknown"
        dates = conn.execute(
            text("SELECT snapshot_date FROM sync_runs WHERE status = :s ORDER BY snapshot_date"), {"s": status}
        ).scalars().all()
        which = (f"{status} now: {', '.join(str(as_date(d)) for d in dates)}" if dates
                 else f"no snapshot is {status} now")
        raise SnapshotStatusError(f"snapshot {snapshot_date} is {now}, not {status} ({which}); nothing to {action}")
    return run


def release_snapshot(engine: Engine, settings: Settings, snapshot_date: date) -> StepResult:
    """A person accepts a quarantined snapshot: it becomes complete, its changes count, and the
    nights after it are judged against it."""
    with engine.begin() as conn:
        changes.lock_unit_history(conn)
        run = _run_in(conn, snapshot_date, "quarantined", "release")
        complete_held(conn, settings, snapshot_date, released_at=datetime.now(UTC),
                      message=decided(RELEASED, run["message"], snapshot_date))
        found, _, rejudged = _after_verdict(conn, settings, snapshot_date)
        held = _held_after(conn, snapshot_date)
    log.info("released snapshot %s: %d unit changes", snapshot_date, len(found))
    return StepResult(snapshot_date.isoformat(), "complete",
                      {"unit_changes": len(found), "released": True, "rejudged": rejudged, "still_quarantined": held})


def discard_snapshot(engine: Engine, settings: Settings, snapshot_date: date) -> StepResult:
    """A person rejects a quarantined snapshot, or one they released (a release taken back):
    its counts are dropped, it never bills. The nights after a quarantined one are not judged
    again (it was never the good night before them); after a released one they are, against
    the good night before it, so the end is that of a discard instead of the release."""
    with engine.begin() as conn:
        changes.lock_unit_history(conn)
        run = get_run(conn, snapshot_date) or {}
        released = run.get("status") == "complete" and run.get("released_at") is not None
        if released:
            kept = run["message"] or ""  # why it was held, unless a failed re-run replaced it since
            message = (DISCARDED + kept.removeprefix(RELEASED) if kept.startswith(RELEASED)
                       else "discarded after its release")
        else:
            run = _run_in(conn, snapshot_date, "quarantined", "discard")
            message = decided(DISCARDED, run["message"], snapshot_date)
        changes.clear_counts(conn, snapshot_date)
        changes.recounted(conn, snapshot_date)  # a discarded night never bills
        forget_night(conn, snapshot_date)
        # not released any more: reopened, its night is judged anew
        record_run(conn, snapshot_date, "discarded", message=message, released_at=None)
        withdraw_quarantine_alerts(conn, snapshot_date)  # decided: nobody is to be asked any more
        if released:
            _, _, rejudged = _after_verdict(conn, settings, snapshot_date)
        else:
            queue_mail_for(conn, changes.rederive_from(conn, snapshot_date, settings.tz).moved)
            rejudged = {}
        held = _held_after(conn, snapshot_date)
    log.info("discarded snapshot %s%s", snapshot_date, " (its release taken back)" if released else "")
    return StepResult(snapshot_date.isoformat(), "discarded", {"still_quarantined": held, "rejudged": rejudged})


def _held_after(conn, snapshot_date: date) -> list[str]:
    """The nights after a decided one still quarantined: each waits for its own decision."""
    return [as_date(d).isoformat() for d in conn.execute(
        text("SELECT snapshot_date FROM sync_runs WHERE snapshot_date > :d AND status = 'quarantined' "
             "ORDER BY snapshot_date"), {"d": snapshot_date}).scalars()]


def reopen_snapshot(engine: Engine, settings: Settings, snapshot_date: date) -> StepResult:
    """A person takes a discarded snapshot up again: it waits, ``failed``, for its night to run
    again, which judges it anew."""
    with engine.begin() as conn:
        changes.lock_unit_history(conn)
        run = _run_in(conn, snapshot_date, "discarded", "reopen")
        message = (f"reopened after a discard: run the night again (agent-billing sync --date {snapshot_date}); "
                   f"it was {run['message']}")
        record_run(conn, snapshot_date, "failed", message=message)
    log.info("reopened snapshot %s", snapshot_date)
    return StepResult(snapshot_date.isoformat(), "failed", {"message": message})


#: What a person can do with a held or discarded snapshot (``agent-billing snapshots``, and the
#: ``quarantine_action`` param of ``vsa_asset_sync``).
SNAPSHOT_ACTIONS: dict[str, Callable[[Engine, Settings, date], StepResult]] = {
    "release": release_snapshot, "discard": discard_snapshot, "reopen": reopen_snapshot,
}


def record_failure(engine: Engine, settings: MailSettings, snapshot_date: date, step: str, error: str,
                   *, run: str, backstop: bool = False) -> str | None:
    """A step failed for good (retries spent): ``sync_runs`` says so and the data team gets one
    alert per date, step and ``run`` (the Airflow run id; a command line run names itself): a
    later run that fails again is news, the same run cleared and failing again is not. A date
    that already has a final status keeps it (the data of its last good run stand); the error
    goes to its message.

    ``backstop``: the run's watcher found the step failed and calls this in case the task was
    killed before its own callback ran; it records nothing when this run's own record is there
    (its real error stands) or, for the validate step, the quality gate's (recorded, with its
    own alert, by the step itself). Returns the id of the alert queued, if any
    (``notify.queue_failure_alert``)."""
    from agent_billing.quality.snapshot_gate import GATE_FAILED_PREFIX

    with engine.begin() as conn:
        if backstop:
            told = (get_run(conn, snapshot_date) or {}).get("message") or ""
            if step == "validate" and told.startswith(GATE_FAILED_PREFIX):
                return None
            # this step's failure is told: by this run's own callback, unless the alert of this
            # run is missing (an earlier run's record: this run's kill is news)
            own = failure_alert_id(snapshot_date, step, run)
            if told.startswith(f"{step} failed: ") and (not settings.data_team or _queued(conn, own)):
                return None
        status = _record_failed(conn, snapshot_date, f"{step} failed: {error}")
        queued = None
        if settings.data_team:
            message_id, subject, body = sync_failure_alert(snapshot_date, step, error, status, run, settings)
            queued = queue_failure_alert(conn, message_id, settings.data_team, subject, body, backstop=backstop)
    log.info("recorded in sync_runs: the sync of %s failed at %s (%s); once the cause is fixed, clear the "
             "failed task or run `agent-billing sync --date %s`", snapshot_date, step, status, snapshot_date)
    return queued


#: The run id of a command-line sync starts so (an Airflow run id never does).
CLI_RUN_PREFIX = "cli-"


def _queued(conn, message_id: str) -> bool:
    return conn.execute(
        text("SELECT 1 FROM notification_outbox WHERE message_id = :id"), {"id": message_id}
    ).first() is not None


def failure_alert_id(snapshot_date: date, step: str, run: str) -> str:
    return f"failure:{snapshot_date}:{step}:{run}"


#: The status an alert gives when the warehouse could not be written (nor read) to record it.
STATUS_NOT_RECORDED = "not recorded in sync_runs (the warehouse could not be written)"


def sync_failure_alert(snapshot_date: date, step: str, error: str, status: str, run: str,
                       settings: MailSettings) -> tuple[str, str, str]:
    """The data team's alert of a failed step (one per date, step and run): id, subject, body.
    A failed extract left no landing: by when to run the night again (``gap_warning``), unless
    the night keeps a status (complete, quarantined: never a gap)."""
    may_turn_into_gap = step == "extract" and status in ("failed", STATUS_NOT_RECORDED)
    gap = gap_warning(settings, snapshot_date) if may_turn_into_gap else None
    return (
        failure_alert_id(snapshot_date, step, run),
        f"[agent-billing] Sync of {snapshot_date} failed at {step}",
        f"{step} failed: {error}\n\nStatus of the date: {status}. Once the cause is fixed (or VSA answers "
        f"again), run the night again: "
        + ("" if run.startswith(CLI_RUN_PREFIX) else "clear the failed task of its vsa_asset_sync run, or ")
        + f"`agent-billing sync --date {snapshot_date}`"
        + (f" {gap}" if gap else "")
        + ". See docs/runbook.md, 'What each failure alert means'.\n",
    )


def _record_failed(conn, snapshot_date: date, message: str) -> str:
    """Record a failed run of the date and return the status it keeps: a final status stays
    (``status_after_failure``). Under the unit-history lock, as every verdict is written: a
    verdict of another date's diff cannot change the status between its read and this write."""
    changes.lock_unit_history(conn)
    status = status_after_failure(conn, snapshot_date)
    record_run(conn, snapshot_date, status, message=message)
    return status


def sync_date(
    engine: Engine,
    settings: Settings,
    snapshot_date: date,
    client_factory: Callable[[], VsaClientLike],
    *,
    now: datetime | None = None,
    on_step: Callable[[StepResult], None] | None = None,
) -> list[StepResult]:
    """Every step for one date, in order, as the DAG runs them (for the command line). A date
    in the future is refused before anything is written (not recorded as the date's failure).
    ``on_step``: told each step's result as the step ends (what a failure later leaves done)."""
    from agent_billing.quality.snapshot_gate import QualityGateFailed

    refuse_future(snapshot_date, now or datetime.now(UTC), settings.tz)
    run = f"{CLI_RUN_PREFIX}{datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%f}"  # each command is a run of its own (its alerts)

    steps: list[tuple[str, Callable[[], StepResult]]] = [
        ("extract", lambda: extract_step(engine, settings, snapshot_date, client_factory, now=now)),
        ("load", lambda: load_step(engine, settings, snapshot_date)),
        ("validate", lambda: validate_step(engine, settings, snapshot_date)),
        ("count", lambda: count_step(engine, settings, snapshot_date)),
        ("diff", lambda: diff_step(engine, settings, snapshot_date)),
    ]
    results: list[StepResult] = []
    for name, step in steps:
        try:
            results.append(step())
        except QualityGateFailed:
            raise  # validate_step recorded it and queued its own alert
        except Exception as exc:
            record_failure(engine, settings, snapshot_date, name, failure_text(exc), run=run)
            raise
        if on_step is not None:
            on_step(results[-1])
        if results[-1].status in ("gap", "discarded"):
            break
    return results
