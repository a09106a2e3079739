"""
### vsa_asset_sync — the nightly VSA snapshot

Every night (cron `AGENT_BILLING_SYNC_CRON`, default `0 2 * * *`, in the billing timezone
`AGENT_BILLING_TIMEZONE`) this DAG:

1. **extract** — lands VSA's orgs, machine groups, agents, billed views and their members
   as an immutable raw extract for the snapshot date (reused, never re-fetched, on re-runs);
   a missed night older than the grace window becomes a **gap**: **gap_or_load** then runs
   **gap_recorded** (green, named for the grid) and skips the rest; earlier nights no run took
   (a stopped scheduler, a paused DAG) and that it records as gaps run **missed_nights_recorded**
   (green, named for the grid; skipped otherwise);
2. **load** — replaces the date's rows in the snapshot tables (one transaction);
3. **validate** — the Great Expectations quality gate; a failure stops everything;
4. **count** — units per `rmm_agent_count` service (`service_unit_counts`);
5. **diff** — unit changes against the previous good snapshot, or **quarantine** when an
   org's agents drop sharply: **quarantine_recorded** then runs (green, named for the grid:
   the night waits for a person's release or discard; also when a later night judged again
   is held), and publish is skipped;
6. **notify** — sends queued mail (unit changes to contracts, alerts to the data team);
7. **publish** — emits the `vsa_snapshot` asset event (`extra.snapshot_date`) that
   triggers `agent_billing`.

A step that fails for good (retries spent, or at once for an input error such as a future
date or a failed quality gate) marks the date `failed` in `sync_runs` (a date already
complete keeps its status and gets the error as its message) and queues one alert to
`AGENT_BILLING_DATA_TEAM_EMAILS`, which **notify** sends; any other failed task (a malformed
`snapshot_date`, a refused `quarantine_action`) alerts the data team too. The run is then
failed (**fail_if_work_failed**). A run still unfinished at `AGENT_BILLING_SYNC_DEADLINE`
(default 06:00, billing timezone) alerts the data team (Airflow deadline alert).

Snapshot date = the logical date's local date, or the param `snapshot_date`.
Param `quarantine_action` (`release` / `discard`) acts on the quarantined snapshot of
`snapshot_date` (required with it) instead of syncing (`discard` also takes back a release);
`reopen` takes a discarded one up again (a run of a discarded night does nothing until then). Backfills: `airflow backfill create --dag-id vsa_asset_sync --from-date … --to-date …`
(see docs/runbook.md).
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import CronTriggerTimetable, Param, dag, get_current_context, task

from agent_billing_assets import SNAPSHOT_ASSET
from data_team_alerts import (
    alert_data_team,
    mail_data_team_now,
    redacted,
    send_follow_up,
    sync_deadline_alert,
    warehouse_unavailable,
)
from run_states import fail_fast, fail_run_if_work_failed, run_params


def sync_timezone() -> str:
    """``AGENT_BILLING_TIMEZONE``, refused in one line naming it when it is no IANA zone (the
    DAG's import error; pendulum's own check names no setting and accepts names such as ``utc``
    that the tasks' settings refuse)."""
    from agent_billing.zones import known_timezone

    raw = os.environ.get("AGENT_BILLING_TIMEZONE", "UTC")
    try:
        return known_timezone(raw)
    except ValueError as exc:
        raise ValueError(f"AGENT_BILLING_TIMEZONE={raw!r}: {exc}") from None


TIMEZONE = sync_timezone()


def sync_schedule() -> str:
    """``AGENT_BILLING_SYNC_CRON``, refused in one line naming it when it is no cron expression
    (the DAG's import error, which the UI shows; croniter's own names no setting)."""
    from croniter import croniter  # Airflow's cron timetables import it already

    raw = os.environ.get("AGENT_BILLING_SYNC_CRON", "0 2 * * *")
    # five fields: croniter reads a sixth as seconds, and '0 2 * * * *' would run every second
    if not croniter.is_valid(raw) or (len(raw.split()) != 5 and not raw.startswith("@")):
        raise ValueError(
            f"AGENT_BILLING_SYNC_CRON={raw!r}: expected a cron expression of five fields (minute hour "
            "day month weekday) such as '0 2 * * *'"
        )
    return raw


SCHEDULE = sync_schedule()


EXTRACT_TIMEOUT, EXTRACT_RETRIES = timedelta(hours=2), 3
MAX_RETRY_DELAY = timedelta(minutes=30)


def late_grace_fits(schedule: str, timezone: str) -> None:
    """Refuse (the DAG's import error, naming the setting) an ``AGENT_BILLING_LATE_GRACE_HOURS``
    that the schedule's own runs exceed: lateness counts from the date's local midnight, so with
    a grace of 1 h every 02:00 run found its date late and recorded a gap, green, every night.
    A value that is no number is left to the tasks' settings, which name it."""
    import math
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from croniter import croniter

    raw = os.environ.get("AGENT_BILLING_LATE_GRACE_HOURS", "36")
    try:
        grace = int(raw)
    except ValueError:
        return
    zone = ZoneInfo(timezone)
    runs = croniter(schedule, datetime(2026, 1, 1, tzinfo=zone))
    latest = max(  # hours from its date's midnight to each run of two weeks (both DST changes aside)
        (run - run.replace(hour=0, minute=0, second=0)).total_seconds() / 3600
        for run in (runs.get_next(datetime) for _ in range(14))
    )
    # the extract's last try may start after all the others timed out and waited: a grace the
    # tries outlast makes a slow night a gap, and a gap is never extracted again
    tries = (EXTRACT_RETRIES + 1) * EXTRACT_TIMEOUT + EXTRACT_RETRIES * MAX_RETRY_DELAY
    least = math.ceil(latest + tries.total_seconds() / 3600)
    if grace < least:
        raise ValueError(
            f"AGENT_BILLING_LATE_GRACE_HOURS={raw!r}: the nightly run (AGENT_BILLING_SYNC_CRON {schedule!r}) "
            f"starts {latest:g} h after its date's midnight and its extract may retry for "
            f"{tries.total_seconds() / 3600:g} h, so a slow night would be recorded as a gap; "
            f"set at least {least} (default 36)"
        )


late_grace_fits(SCHEDULE, TIMEZONE)


def record_failure(context) -> None:
    """on_failure_callback: the step failed for good (retries spent, or at once for an input
    error); record it in sync_runs and alert the data team."""
    from agent_billing.quality.snapshot_gate import QualityGateFailed
    from agent_billing.settings import mail_settings
    from agent_billing.sync.dates import parse_date
    from agent_billing.sync.pipeline import STATUS_NOT_RECORDED, sync_failure_alert
    from agent_billing.sync.pipeline import record_failure as record
    from agent_billing.warehouse.errors import failure_text
    from warehouse_hook import WarehouseHook

    ti, error = context["ti"], context.get("exception")
    if isinstance(getattr(error, "__cause__", None) or error, QualityGateFailed):  # fail_fast keeps the cause
        return  # a failed quality gate was recorded, with its own alert, by the step itself
    snapshot_date = ti.xcom_pull(task_ids="resolve_snapshot_date")
    if snapshot_date:
        d, message, settings = parse_date(snapshot_date), redacted(failure_text(error) if error else "unknown error"), mail_settings()
        try:
            engine = WarehouseHook().get_conn(check_schema=False)
            try:
                queued = record(engine, settings, d, ti.task_id, message, run=ti.run_id,
                                backstop=bool(context.get("backstop")))
            finally:
                engine.dispose()
        except warehouse_unavailable() as exc:  # the alert goes out all the same
            mail_data_team_now(exc, *sync_failure_alert(d, ti.task_id, message, STATUS_NOT_RECORDED, ti.run_id,
                                                        settings))
        else:
            send_follow_up(queued)


@dag(
    dag_id="vsa_asset_sync",
    schedule=CronTriggerTimetable(SCHEDULE, timezone=TIMEZONE),
    start_date=pendulum.datetime(2024, 1, 1, tz=TIMEZONE),
    catchup=False,
    max_active_runs=1,
    deadline=sync_deadline_alert(SCHEDULE, TIMEZONE),
    tags=["agent-billing", "vsa", "nightly"],
    doc_md=__doc__,
    default_args={
        "owner": "data-team",
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "max_retry_delay": MAX_RETRY_DELAY,
        "execution_timeout": timedelta(hours=1),
        "on_failure_callback": alert_data_team,  # the sync steps: record_failure
    },
    params={
        "snapshot_date": Param(
            None, type=["null", "string"], format="date",
            description="Snapshot date to (re)process, YYYY-MM-DD; default: the logical date's local date.",
        ),
        "quarantine_action": Param(
            None, type=["null", "string"], enum=[None, "release", "discard", "reopen"],
            description="release or discard the quarantined snapshot of snapshot_date (discard also takes "
                        "back a release), or reopen the discarded one, instead of syncing.",
        ),
    },
)
def vsa_asset_sync():
    @task
    @fail_fast
    def resolve_snapshot_date() -> str:
        from datetime import UTC, datetime

        from agent_billing.settings import get_settings
        from agent_billing.sync.dates import parse_date, refuse_future, snapshot_date_for

        ctx = get_current_context()
        params = run_params(ctx)
        if params.get("quarantine_action") and not params.get("snapshot_date"):  # never a default night
            from agent_billing.errors import UserError

            raise UserError(f"quarantine_action {params['quarantine_action']!r} needs the snapshot_date of the "
                            "night it decides (YYYY-MM-DD); none was given")
        if params.get("snapshot_date"):
            snapshot_date = parse_date(params["snapshot_date"], "snapshot_date")
            refuse_future(snapshot_date, datetime.now(UTC), get_settings().tz)  # before any step
            return snapshot_date.isoformat()
        when = ctx.get("logical_date") or ctx["dag_run"].run_after  # manual runs may have none
        return snapshot_date_for(when, get_settings().tz).isoformat()

    @task.branch
    @fail_fast
    def route() -> str:
        action = get_current_context()["params"].get("quarantine_action")
        return "quarantine_action" if action else "extract"

    @task(execution_timeout=EXTRACT_TIMEOUT, retries=EXTRACT_RETRIES, on_failure_callback=record_failure)
    @fail_fast
    def extract(snapshot_date: str) -> dict:
        from agent_billing.settings import get_settings
        from agent_billing.sync.dates import parse_date
        from agent_billing.sync.pipeline import extract_step
        from vsa_hook import VsaHook
        from warehouse_hook import WarehouseHook

        return extract_step(
            WarehouseHook().get_conn(), get_settings(), parse_date(snapshot_date), VsaHook().get_conn
        ).to_xcom()

    @task.branch
    @fail_fast
    def gap_or_load(extracted: dict) -> str:
        return "gap_recorded" if extracted["status"] == "gap" else "load"

    @task
    @fail_fast
    def gap_recorded(extracted: dict) -> dict:
        """Runs only for a gap night, so that the grid shows it (sync_runs says `gap`)."""
        import logging

        logging.getLogger(__name__).warning(extracted["detail"]["message"])
        return extracted

    @task
    @fail_fast
    def missed_nights_recorded(extracted: dict) -> list[str]:
        """Runs only when this night's extract recorded earlier nights no run took as gaps (a
        stopped scheduler, a paused DAG), so that the grid shows them; skipped otherwise."""
        import logging

        from airflow.sdk.exceptions import AirflowSkipException

        recorded = extracted["detail"].get("gaps_recorded_before") or []
        if not recorded:
            raise AirflowSkipException("no night before this one was left without a run")
        logging.getLogger(__name__).warning(
            "recorded as gaps, no run having taken them: %s (docs/runbook.md, 'Backfill a missed night')",
            ", ".join(recorded))
        return recorded

    @task(on_failure_callback=record_failure)
    @fail_fast
    def load(snapshot_date: str, _extracted: dict) -> dict:
        from agent_billing.settings import get_settings
        from agent_billing.sync.dates import parse_date
        from agent_billing.sync.pipeline import load_step
        from warehouse_hook import WarehouseHook

        return load_step(WarehouseHook().get_conn(), get_settings(), parse_date(snapshot_date)).to_xcom()

    @task(on_failure_callback=record_failure)
    @fail_fast  # a failed quality gate (QualityGateFailed) is not transient: no retry
    def validate(snapshot_date: str, _loaded: dict) -> dict:
        from agent_billing.settings import get_settings
        from agent_billing.sync.dates import parse_date
        from agent_billing.sync.pipeline import validate_step
        from warehouse_hook import WarehouseHook

        return validate_step(WarehouseHook().get_conn(), get_settings(), parse_date(snapshot_date)).to_xcom()

    @task(on_failure_callback=record_failure)
    @fail_fast
    def count(snapshot_date: str, _validated: dict) -> dict:
        from agent_billing.settings import get_settings
        from agent_billing.sync.dates import parse_date
        from agent_billing.sync.pipeline import count_step
        from warehouse_hook import WarehouseHook

        return count_step(WarehouseHook().get_conn(), get_settings(), parse_date(snapshot_date)).to_xcom()

    @task(on_failure_callback=record_failure)
    @fail_fast
    def diff(snapshot_date: str, _counted: dict) -> dict:
        from agent_billing.settings import get_settings
        from agent_billing.sync.dates import parse_date
        from agent_billing.sync.pipeline import diff_step
        from warehouse_hook import WarehouseHook

        return diff_step(WarehouseHook().get_conn(), get_settings(), parse_date(snapshot_date)).to_xcom()

    @task(trigger_rule="none_failed_min_one_success")
    @fail_fast
    def quarantine_recorded(snapshot_date: str) -> list[str]:
        """Runs only when the quarantine holds a night, so that the grid shows a night waiting for
        a person (sync_runs says `quarantined`; the data team is mailed): this night, or a later
        one this run's diff or decision judged again; skipped otherwise."""
        import logging

        from airflow.sdk.exceptions import AirflowSkipException

        outcome = next((x for x in get_current_context()["ti"].xcom_pull(
            task_ids=["diff", "quarantine_action"]) or [] if x), None) or {}
        held = [snapshot_date] if outcome.get("status") == "quarantined" else []
        held += [night for night, status in (outcome.get("detail") or {}).get("rejudged", {}).items()
                 if status == "quarantined"]
        if not held:
            raise AirflowSkipException(f"no night is quarantined by this run of {snapshot_date}")
        logging.getLogger(__name__).warning(
            "quarantined, waiting for a decision: %s; trigger this DAG with snapshot_date and quarantine_action "
            "release or discard for each (docs/runbook.md, 'Release or discard a quarantined snapshot')",
            ", ".join(held))
        return held

    @task
    @fail_fast
    def quarantine_action(snapshot_date: str) -> dict:
        from agent_billing.settings import get_settings
        from agent_billing.sync.dates import parse_date
        from agent_billing.sync.pipeline import SNAPSHOT_ACTIONS
        from warehouse_hook import WarehouseHook

        step = SNAPSHOT_ACTIONS[get_current_context()["params"]["quarantine_action"]]
        return step(WarehouseHook().get_conn(), get_settings(), parse_date(snapshot_date)).to_xcom()

    @task(trigger_rule="all_done", execution_timeout=timedelta(minutes=15))  # gap alerts too
    @fail_fast
    def notify() -> dict:
        from outbox_delivery import deliver_pending_mail

        return deliver_pending_mail()

    @task(outlets=[SNAPSHOT_ASSET], trigger_rule="none_failed_min_one_success")
    @fail_fast
    def publish(snapshot_date: str) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from agent_billing.billing.trigger import BILLABLE

        ctx = get_current_context()
        outcome = next(
            (x for x in ctx["ti"].xcom_pull(task_ids=["diff", "quarantine_action"]) or [] if x), None
        )
        if outcome is None or outcome["status"] not in BILLABLE:
            raise AirflowSkipException(f"snapshot {snapshot_date} is not billable: {outcome}")
        ctx["outlet_events"][SNAPSHOT_ASSET].extra = {"snapshot_date": snapshot_date}
        return outcome

    snapshot_date = resolve_snapshot_date()
    routed = route()
    extracted = extract(snapshot_date)
    acted = quarantine_action(snapshot_date)
    snapshot_date >> routed >> [extracted, acted]
    branched = gap_or_load(extracted)
    missed_nights_recorded(extracted)
    gap = gap_recorded(extracted)
    loaded = load(snapshot_date, extracted)
    branched >> [gap, loaded]
    validated = validate(snapshot_date, loaded)
    counted = count(snapshot_date, validated)
    diffed = diff(snapshot_date, counted)
    # Mail never holds back billing: publish and notify both follow whichever branch ran.
    published = publish(snapshot_date)
    delivered = notify()
    [diffed, acted] >> published
    [diffed, acted] >> quarantine_recorded(snapshot_date)
    [diffed, acted, gap] >> delivered
    fail_run_if_work_failed()  # last: downstream of every task above

vsa_asset_sync()
