"""Alerts to the data team (``AGENT_BILLING_DATA_TEAM_EMAILS``) through the warehouse outbox.

* :func:`alert_data_team` — the ``on_failure_callback`` of every task (``default_args``):
  one alert per DAG, run and task (a deterministic message id, so a repeated failure of the
  same task in the same run is not mailed twice). ``vsa_asset_sync``'s steps use their own
  callback, which also records the failure in ``sync_runs``.
* :func:`sync_deadline_alert` — the nightly sync's deadline: an Airflow deadline alert that
  fires when a run has not finished by ``AGENT_BILLING_SYNC_DEADLINE`` (``HH:MM``, default
  06:00) in the billing timezone; :func:`alert_sync_late` is its callback (run by the
  executor), which queues the alert and delivers the outbox at once (the run's own
  ``notify`` has not run yet).

The DAG files import this module at parse time: it imports nothing heavy at top level.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, time, timedelta
from typing import Any

from airflow.sdk import DeadlineAlert, DeadlineReference, SyncCallback

log = logging.getLogger(__name__)

SYNC_DEADLINE_VARIABLE = "AGENT_BILLING_SYNC_DEADLINE"
DEFAULT_SYNC_DEADLINE = "06:00"
RUNBOOK = "See docs/runbook.md, 'Run states and alerts'."


def queue_data_team_alert(message_id: str, subject: str, body: str, *, backstop: bool = False) -> str | None:
    """Queue one mail to the data team; returns the id queued (``notify.queue_failure_alert``),
    None when no recipient is configured, the message was already queued or sent, or it was
    mailed at once instead.

    When the warehouse cannot take it (unreachable, its connection undefined, no outbox table:
    often the very failure being reported), the alert is mailed at once through
    ``smtp_default`` instead, saying so (:func:`mail_data_team_now`)."""
    from agent_billing.settings import mail_settings
    from agent_billing.sync.notify import queue_failure_alert
    from warehouse_hook import WarehouseHook

    recipients = mail_settings().data_team  # also when another setting is invalid: that may be the failure
    if not recipients:
        log.warning("AGENT_BILLING_DATA_TEAM_EMAILS is empty: alert %r not queued", message_id)
        return None
    try:
        engine = WarehouseHook().get_conn(check_schema=False)  # alerts about the schema too
        try:
            with engine.begin() as conn:
                return queue_failure_alert(conn, message_id, recipients, subject, body, backstop=backstop)
        finally:
            engine.dispose()
    except warehouse_unavailable() as exc:  # a backstop too: it cannot tell whether the task mailed
        mail_data_team_now(exc, message_id, subject, body)
        return None


def send_follow_up(queued: str | None) -> None:
    """Send a follow-up alert at once, and nothing else (``notify.is_follow_up``): it was queued
    after the run's notify and watcher delivered, and would otherwise wait for the next run's.
    The rest of the outbox is left to the deliveries whose task fails on what goes wrong."""
    from agent_billing.sync.notify import is_follow_up

    if not is_follow_up(queued):
        return
    from outbox_delivery import deliver_pending_mail

    try:
        deliver_pending_mail(only=queued)
    except Exception as exc:  # noqa: BLE001 - a callback's trouble: logged; an unsent alert waits in the outbox
        log.warning("follow-up alert %r: %s (notification_outbox keeps it unless it was sent; the next "
                    "delivery sends what waits)", queued, redacted(str(exc)))


def warehouse_unavailable() -> tuple[type[BaseException], ...]:
    """The errors of a warehouse that cannot take an alert: its connection undefined, the
    database unreachable or without its tables."""
    from sqlalchemy.exc import DBAPIError

    from agent_billing.errors import ConfigurationError

    return ConfigurationError, DBAPIError


def mail_data_team_now(cause: BaseException, message_id: str, subject: str, body: str) -> None:
    """Mail an alert through ``smtp_default`` without the outbox, which ``cause`` kept it from;
    the mail says so. Not deduplicated like the outbox: used only when the outbox cannot be."""
    from agent_billing.errors import ConfigurationError
    from agent_billing.settings import mail_settings
    from agent_billing.sync.notify import KILLED, KILLED_UNCHECKED, refused_by, send_now
    from airflow_connections import optional_connection_info

    settings = mail_settings()
    reason = redacted(str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__)
    if not settings.data_team:
        log.warning("AGENT_BILLING_DATA_TEAM_EMAILS is empty: alert %r not sent (%s)", message_id, reason)
        return
    smtp = optional_connection_info("smtp_default")
    if smtp is None:
        raise ConfigurationError(
            f"alert {message_id!r} not sent: the warehouse could not queue it ({reason}) and the "
            "Airflow connection 'smtp_default' is not defined"
        )
    log.warning("alert %r mailed directly: the warehouse could not queue it (%s)", message_id, reason)
    body = body.replace(KILLED, KILLED_UNCHECKED)  # a backstop that could not look for the task's own alert
    body += f"\nThis alert is not in notification_outbox: the warehouse could not take it ({reason}).\n"
    turned_away = send_now(smtp, settings.notify_from, message_id, ",".join(settings.data_team), subject, body)
    if turned_away:  # the others got it; nothing retries a direct mail, so the log tells
        log.warning("alert %r mailed to the others but %s: fix AGENT_BILLING_DATA_TEAM_EMAILS",
                    message_id, refused_by(turned_away))


def redacted(text: str) -> str:
    """The text without any secret Airflow knows (connection passwords read in this process)."""
    from airflow.sdk._shared.secrets_masker import redact

    return str(redact(text))


def alert_data_team(context: Any) -> None:
    """on_failure_callback: a task failed for good (retries spent, or an input error). Also
    called by the run's watcher for a task that ended failed without it (``backstop``: killed
    before its callback ran), which never replaces an alert the task wrote itself."""
    from agent_billing.warehouse.errors import failure_text

    ti = context["ti"]
    dag_id, run_id, task_id = ti.dag_id, ti.run_id, ti.task_id
    error = context.get("exception")
    error = redacted(failure_text(error) if error else "unknown error")
    params = {k: v for k, v in (context.get("params") or {}).items() if v is not None}
    body = (
        f"{dag_id} failed at {task_id} (run {run_id}, try {ti.try_number}).\n\n"
        f"Error: {error}\n"
        + (f"Params: {params}\n" if params else "")
        + f"\nThe run is marked failed. {RUNBOOK}\n"
    )
    send_follow_up(queue_data_team_alert(
        f"task-failure:{dag_id}:{run_id}:{task_id}",
        f"[agent-billing] {dag_id} failed at {task_id}",
        body,
        backstop=bool(context.get("backstop")),
    ))


def created_after_deadline(run: dict, due_after_seconds: int | None) -> bool:
    """Whether the run was queued after its deadline (logical date + the interval)."""
    logical, queued = run.get("logical_date"), run.get("queued_at") or run.get("run_after")
    if due_after_seconds is None or not logical or not queued:
        return False
    due = datetime.fromisoformat(str(logical).replace("Z", "+00:00")) + timedelta(seconds=due_after_seconds)
    return datetime.fromisoformat(str(queued).replace("Z", "+00:00")) >= due


def sync_deadline_alert(schedule: str, timezone: str) -> DeadlineAlert:
    """The deadline of a nightly sync run: ``AGENT_BILLING_SYNC_DEADLINE`` local time on the
    night it was triggered.

    Airflow measures a deadline as an interval from a reference; the reference is the run's
    logical date (a cron run's trigger time), the interval the wall-clock time from the cron's
    trigger time to the deadline (e.g. ``0 2 * * *`` and 06:00 → 4 h). On the two nights a
    year when the clocks change between them the alert comes an hour early or late.
    """
    raw = os.environ.get(SYNC_DEADLINE_VARIABLE, DEFAULT_SYNC_DEADLINE)
    interval = time_to_deadline(schedule, parse_local_time(raw))
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
        interval=interval,
        callback=SyncCallback(alert_sync_late, kwargs={
            "deadline": raw, "timezone": timezone, "due_after_seconds": int(interval.total_seconds())}),
        name="sync_not_finished",
    )


def parse_local_time(raw: str) -> time:
    try:
        hours, minutes = (int(part) for part in raw.strip().split(":"))
        return time(hours, minutes)
    except ValueError:
        raise ValueError(
            f"{SYNC_DEADLINE_VARIABLE}={raw!r}: expected HH:MM, a local time in the billing timezone"
        ) from None


def time_to_deadline(schedule: str, deadline: time) -> timedelta:
    """Wall-clock time from the schedule's first trigger of a day to the next ``deadline``."""
    from croniter import croniter  # Airflow's cron timetables import it already

    midnight = datetime(2024, 1, 15)  # any day: only the wall-clock times matter
    trigger = croniter(schedule, midnight - timedelta(seconds=1)).get_next(datetime)
    due = datetime.combine(trigger.date(), deadline)
    if due <= trigger:
        due += timedelta(days=1)
    return due - trigger


def alert_sync_late(context: dict, deadline: str, timezone: str, due_after_seconds: int | None = None) -> None:
    """Deadline callback: the run has not finished by the deadline. Not alerted: runs created
    after their deadline (backfills of past nights; a night's run created late, when the DAG
    is unpaused or the scheduler catches up after an outage: due at once by construction) and
    runs that ended failed (Airflow prunes the deadline of successful runs only; a failed one
    alerted already). ``due_after_seconds``: the deadline's interval from the logical date."""
    run = context.get("dag_run") or {}
    dag_id, run_id = run.get("dag_id", "vsa_asset_sync"), run.get("dag_run_id", "?")
    if run.get("run_type") == "backfill":
        log.info("backfill run %s passed the %s deadline: not alerted", run_id, deadline)
        return
    if created_after_deadline(run, due_after_seconds):
        log.info("run %s was created after its %s deadline (queued %s): not alerted", run_id, deadline,
                 run.get("queued_at"))
        return
    if run.get("state") in ("success", "failed"):
        log.info("run %s finished (%s) before its deadline was checked: not alerted", run_id, run["state"])
        return  # a failed run alerted the data team already
    queued = queue_data_team_alert(
        f"deadline:{dag_id}:{run_id}",
        f"[agent-billing] {dag_id} has not finished by {deadline} ({timezone})",
        f"The nightly sync run {run_id} (logical date {run.get('logical_date')}) was still "
        f"{run.get('state', 'running')} at its deadline {deadline} {timezone}: billing waits "
        f"for it. Check the run in Airflow. {RUNBOOK}\n",
    )
    if queued:
        from outbox_delivery import deliver_pending_mail

        deliver_pending_mail()
