"""Alerts to the data team: every task of every DAG has a failure callback, every task maps
input errors to an immediate failure, a watcher fails the run, and the nightly sync carries
a deadline alert at the configured local time whose callback mails the data team."""

from __future__ import annotations

from datetime import date, time, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import text

from ..conftest import RefusingSmtp

ROOT = Path(__file__).resolve().parents[2]
DAG_IDS = ["agent_billing", "get_units_now", "vsa_asset_sync"]
DATA_TEAM = "data@msp.example"


def as_list(callbacks) -> list:
    if callbacks is None:
        return []
    return list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_every_task_fails_fast_and_alerts_and_a_watcher_fails_the_run(dagbag, dag_id):
    from run_states import WATCHER_TASK_ID

    dag = dagbag.get_dag(dag_id)
    watcher = dag.get_task(WATCHER_TASK_ID)
    assert (watcher.trigger_rule, watcher.retries) == ("all_done", 0)
    assert watcher.upstream_task_ids == set(dag.task_ids) - {WATCHER_TASK_ID}  # watches every task
    assert not watcher.downstream_task_ids
    assert as_list(watcher.on_failure_callback) == []  # it alerts for the failed tasks itself
    for task in dag.tasks:
        if task.task_id == WATCHER_TASK_ID:
            continue
        assert getattr(task.python_callable, "fails_fast", False), f"{dag_id}.{task.task_id}"
        names = {c.__name__ for c in as_list(task.on_failure_callback)}
        assert names & {"alert_data_team", "record_failure"}, f"{dag_id}.{task.task_id}: {names}"


def test_the_nightly_sync_carries_a_deadline_at_six_local_by_default(dagbag):
    from airflow.sdk import DeadlineReference

    [alert] = dagbag.get_dag("vsa_asset_sync").deadline
    assert alert.reference == DeadlineReference.DAGRUN_LOGICAL_DATE
    assert alert.interval == timedelta(hours=4)  # cron 0 2 * * * → 06:00
    assert alert.callback.path == "data_team_alerts.alert_sync_late"
    assert alert.callback.kwargs == {"deadline": "06:00", "timezone": "UTC", "due_after_seconds": 4 * 3600}


def test_the_deadline_follows_the_configured_local_time_and_schedule(airflow_db, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AGENT_BILLING_SYNC_DEADLINE", "07:30")
    monkeypatch.setenv("AGENT_BILLING_SYNC_CRON", "15 1 * * *")
    monkeypatch.setenv("AGENT_BILLING_TIMEZONE", "Europe/Amsterdam")
    dag = DagBag(dag_folder=str(ROOT / "dags" / "vsa_asset_sync.py")).get_dag("vsa_asset_sync")

    [alert] = dag.deadline
    assert alert.interval == timedelta(hours=6, minutes=15)
    assert alert.callback.kwargs == {"deadline": "07:30", "timezone": "Europe/Amsterdam",
                                     "due_after_seconds": 6 * 3600 + 15 * 60}


def test_a_malformed_deadline_is_an_import_error_naming_the_setting(airflow_db, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AGENT_BILLING_SYNC_DEADLINE", "6am")
    bag = DagBag(dag_folder=str(ROOT / "dags" / "vsa_asset_sync.py"))
    [error] = bag.import_errors.values()
    assert "AGENT_BILLING_SYNC_DEADLINE='6am': expected HH:MM" in error


@pytest.mark.parametrize("cron", ["nonsense", "0 2 * * * *"])  # six fields: croniter reads seconds, every second
def test_a_malformed_sync_cron_is_an_import_error_naming_the_setting(airflow_db, monkeypatch, cron):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AGENT_BILLING_SYNC_CRON", cron)
    bag = DagBag(dag_folder=str(ROOT / "dags" / "vsa_asset_sync.py"))
    [error] = bag.import_errors.values()
    assert (f"AGENT_BILLING_SYNC_CRON={cron!r}: expected a cron expression of five fields (minute hour day month "
            "weekday) such as '0 2 * * *'") in error


@pytest.mark.parametrize(("cron", "grace", "refused"), [
    ("0 2 * * *", "1", "starts 2 h after its date's midnight and its extract may retry for 9.5 h, so a slow night "
     "would be recorded as a gap; set at least 12"),
    ("0 2 * * *", "11", "set at least 12"), ("30 23 * * *", "24", "starts 23.5 h after"),
    ("0 2 * * *", "12", None), ("0 2 * * *", "36", None),
])
def test_a_grace_the_nightly_run_exceeds_is_an_import_error_naming_the_setting(airflow_db, monkeypatch, cron, grace,
                                                                              refused):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AGENT_BILLING_SYNC_CRON", cron)
    monkeypatch.setenv("AGENT_BILLING_LATE_GRACE_HOURS", grace)
    bag = DagBag(dag_folder=str(ROOT / "dags" / "vsa_asset_sync.py"))
    if refused is None:
        assert not bag.import_errors
    else:
        [error] = bag.import_errors.values()
        assert f"AGENT_BILLING_LATE_GRACE_HOURS='{grace}': the nightly run" in error and refused in error


@pytest.mark.parametrize("zone", ["Europe/Amsterdm", "utc", "localtime"])  # utc: pendulum takes it, the tasks'
def test_a_misspelt_timezone_is_an_import_error_naming_the_setting(airflow_db, monkeypatch, zone):  # settings do not
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AGENT_BILLING_TIMEZONE", zone)
    bag = DagBag(dag_folder=str(ROOT / "dags" / "vsa_asset_sync.py"))
    [error] = bag.import_errors.values()
    why = ("is this machine's own setting, so each machine would bill by its clock" if zone == "localtime"
           else "(use an IANA name such as Europe/Amsterdam)")
    assert f"AGENT_BILLING_TIMEZONE='{zone}': " in error and why in error


def test_time_to_deadline_crosses_midnight():
    from data_team_alerts import time_to_deadline

    assert time_to_deadline("0 23 * * *", time(6, 0)) == timedelta(hours=7)
    assert time_to_deadline("0 2 * * *", time(2, 0)) == timedelta(hours=24)


def run_context(run_type: str = "scheduled", state: str = "running", queued_at: str = "2026-11-03T02:00:01Z") -> dict:
    return {"dag_run": {
        "dag_id": "vsa_asset_sync", "dag_run_id": f"{run_type}__2026-11-03T02:00:00+00:00",
        "run_type": run_type, "state": state, "logical_date": "2026-11-03T02:00:00Z", "queued_at": queued_at}}


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_late_nightly_run_mails_the_data_team_at_once(warehouse, smtp_inbox, monkeypatch):
    from data_team_alerts import alert_sync_late

    monkeypatch.setenv("AGENT_BILLING_DATA_TEAM_EMAILS", DATA_TEAM)
    alert_sync_late(context=run_context(), deadline="06:00", timezone="Europe/Amsterdam", due_after_seconds=4 * 3600)
    alert_sync_late(context=run_context(), deadline="06:00", timezone="Europe/Amsterdam")  # once
    alert_sync_late(context=run_context("backfill"), deadline="06:00", timezone="Europe/Amsterdam")
    alert_sync_late(context=run_context(state="failed"), deadline="06:00", timezone="Europe/Amsterdam")
    # the night's run created at 06:00 or later (the DAG unpaused, the scheduler back from an outage)
    late = run_context(queued_at="2026-11-03T06:00:00Z")
    late["dag_run"]["dag_run_id"] = "scheduled__created-late"
    alert_sync_late(context=late, deadline="06:00", timezone="Europe/Amsterdam", due_after_seconds=4 * 3600)

    assert smtp_inbox.subjects() == [
        "[agent-billing] vsa_asset_sync has not finished by 06:00 (Europe/Amsterdam)"]
    assert smtp_inbox.messages[0].rcpt_tos == [DATA_TEAM]
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT message_id FROM notification_outbox")).scalars().all() == [
            "deadline:vsa_asset_sync:scheduled__2026-11-03T02:00:00+00:00"]


class FailedTask:
    """The task instance an ``on_failure_callback`` gets (the fields the alert reads)."""

    dag_id, run_id, task_id, try_number = "vsa_asset_sync", "scheduled__2026-11-03T02:00:00+00:00", "load", 3


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once closed


@pytest.fixture(params=["unreachable", "without tables"])
def broken_warehouse(request, tmp_path, monkeypatch):
    """A warehouse that cannot take an alert: its server down, or a database never migrated."""
    if request.param == "unreachable":
        url = f"postgresql://billing:s3cret-pw@127.0.0.1:{closed_port()}/warehouse"
    else:
        url = f"sqlite:///{tmp_path / 'empty.db'}"
    monkeypatch.setenv("AIRFLOW_CONN_BILLING_WAREHOUSE", url)
    monkeypatch.setenv("AGENT_BILLING_DATA_TEAM_EMAILS", DATA_TEAM)
    return request.param


def test_a_failure_the_warehouse_cannot_record_is_mailed_at_once(broken_warehouse, smtp_inbox):
    """The warehouse being down is the failure most worth an alert: it goes out without the outbox."""
    from data_team_alerts import alert_data_team

    alert_data_team({"ti": FailedTask(), "exception": RuntimeError("connection refused")})

    assert smtp_inbox.subjects() == ["[agent-billing] vsa_asset_sync failed at load"]
    [mail] = smtp_inbox.messages
    assert mail.rcpt_tos == [DATA_TEAM]
    body = mail.content.decode()
    assert "vsa_asset_sync failed at load" in body and "not in notification_outbox" in body
    assert "s3cret-pw" not in body


@pytest.mark.parametrize("broken_warehouse", ["unreachable"], indirect=True)
def test_a_mailed_alert_names_the_data_team_addresses_the_server_refused(broken_warehouse, monkeypatch, caplog):
    """Nothing retries an alert mailed without the outbox: a refused address is told in the log
    (the others get the alert), never passed over in silence."""
    from data_team_alerts import alert_data_team

    server = RefusingSmtp().start()
    server.refused = frozenset({"gone@msp.example"})
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", server.connection_json)
    monkeypatch.setenv("AGENT_BILLING_DATA_TEAM_EMAILS", f"{DATA_TEAM},gone@msp.example")
    try:
        alert_data_team({"ti": FailedTask(), "exception": RuntimeError("connection refused")})
    finally:
        server.stop()
    assert [m.rcpt_tos for m in server.messages] == [[DATA_TEAM]]
    [warning] = [r.getMessage() for r in caplog.records if "refused by" in r.getMessage()]
    assert "gone@msp.example (550" in warning and "AGENT_BILLING_DATA_TEAM_EMAILS" in warning


def test_a_late_run_is_mailed_at_once_when_the_warehouse_is_down(broken_warehouse, smtp_inbox):
    from data_team_alerts import alert_sync_late

    alert_sync_late(context=run_context(), deadline="06:00", timezone="UTC")
    assert smtp_inbox.subjects() == ["[agent-billing] vsa_asset_sync has not finished by 06:00 (UTC)"]


def test_without_warehouse_or_smtp_the_callback_says_both_in_one_line(broken_warehouse, monkeypatch):
    from agent_billing.errors import ConfigurationError
    from data_team_alerts import alert_data_team

    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    with pytest.raises(ConfigurationError, match="warehouse could not queue it .*'smtp_default' is not defined") as raised:
        alert_data_team({"ti": FailedTask(), "exception": RuntimeError("boom")})
    assert "s3cret-pw" not in str(raised.value) and "\n" not in str(raised.value)


def step_of(task_id: str) -> FailedStep:
    step = FailedStep()
    step.task_id = task_id
    return step


LOAD_ALERT = f"failure:2026-11-03:load:{FailedTask.run_id}"


class FailedStep(FailedTask):
    @staticmethod
    def xcom_pull(task_ids: str) -> str:
        assert task_ids == "resolve_snapshot_date"
        return "2026-11-03"


def test_a_failed_sync_step_the_warehouse_cannot_record_is_mailed_at_once(dagbag, broken_warehouse, smtp_inbox):
    """The sync steps' own callback records the date in sync_runs; when it cannot, it still mails."""
    [callback] = as_list(dagbag.get_dag("vsa_asset_sync").get_task("load").on_failure_callback)
    callback({"ti": FailedStep(), "exception": RuntimeError("could not connect")})

    assert smtp_inbox.subjects() == ["[agent-billing] Sync of 2026-11-03 failed at load"]
    body = smtp_inbox.messages[0].content.decode()
    assert "load failed: could not connect" in body and "not recorded in sync_runs" in body


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("setting", "kept", "by_when"), [
    ({}, None, " before 2026-11-04 12:00 UTC: later, with no landing, the night becomes a gap."),
    # a late run takes VSA's present state: no gap to fear
    ({"AGENT_BILLING_LATE_OBSERVATION": "allow"}, None, ". See docs/runbook.md"),
    # a night that keeps its status never turns into a gap (its landing is refused if missing)
    ({}, "complete", ". See docs/runbook.md"),
    # another setting is invalid: the settings that name the moment cannot be read, the rule is said
    ({"AGENT_BILLING_QUARANTINE_SHARE": "lots"}, None,
     " before AGENT_BILLING_LATE_GRACE_HOURS after the night's midnight: later, with no landing, the night "
     "becomes a gap."),
])
def test_a_failed_extract_s_alert_says_by_when_to_run_the_night_again(dagbag, warehouse, monkeypatch,
                                                                       setting, kept, by_when):
    """An extract that failed left no landing: the alert names the moment the night turns into a
    gap (its date's midnight plus AGENT_BILLING_LATE_GRACE_HOURS, 36 h), not only the rule."""
    from agent_billing.sync.runs import record_run

    monkeypatch.setenv("AGENT_BILLING_DATA_TEAM_EMAILS", DATA_TEAM)
    for name, value in setting.items():
        monkeypatch.setenv(name, value)
    if kept:
        with warehouse.begin() as conn:
            record_run(conn, date(2026, 11, 3), kept)
    [callback] = as_list(dagbag.get_dag("vsa_asset_sync").get_task("extract").on_failure_callback)
    callback({"ti": step_of("extract"), "exception": RuntimeError("VSA answered 503 five times")})
    with warehouse.connect() as conn:
        body = conn.execute(text("SELECT body FROM notification_outbox")).scalar()
    assert ("run the night again: clear the failed task of its vsa_asset_sync run, or "
            f"`agent-billing sync --date 2026-11-03`{by_when}") in body, body


def test_a_failed_extract_the_warehouse_cannot_record_still_says_by_when(dagbag, broken_warehouse, smtp_inbox):
    [callback] = as_list(dagbag.get_dag("vsa_asset_sync").get_task("extract").on_failure_callback)
    callback({"ti": step_of("extract"), "exception": RuntimeError("VSA answered 503 five times")})
    body = message_from_bytes(smtp_inbox.messages[0].content, policy=policy.default).get_content()
    assert "before 2026-11-04 12:00 UTC: later, with no landing, the night becomes a gap" in body, body


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_the_watcher_s_backstop_records_a_killed_step_once_and_never_over_its_own_record(
        dagbag, warehouse, monkeypatch):
    """The watcher calls a failed step's callback as a backstop (the step was killed before it
    ran it): the date is recorded failed with one alert, and a failure the step recorded itself
    (its real error) is left as it is, whichever of the two comes first."""
    from agent_billing.sync.notify import KILLED

    monkeypatch.setenv("AGENT_BILLING_DATA_TEAM_EMAILS", DATA_TEAM)
    [callback] = as_list(dagbag.get_dag("vsa_asset_sync").get_task("load").on_failure_callback)

    def state() -> tuple:
        with warehouse.connect() as conn:
            run = conn.execute(text("SELECT status, message FROM sync_runs")).one()
            mail = conn.execute(text("SELECT message_id, body FROM notification_outbox")).all()
        return tuple(run), [(m, "killed before" in body) for m, body in mail]

    callback({"ti": FailedStep(), "exception": KILLED, "backstop": True})
    assert state() == (("failed", f"load failed: {KILLED}"), [(LOAD_ALERT, True)])
    callback({"ti": FailedStep(), "exception": RuntimeError("out of disk")})  # the step's own, late
    assert state() == (("failed", "load failed: out of disk"), [(LOAD_ALERT, False)])
    callback({"ti": FailedStep(), "exception": KILLED, "backstop": True})  # the backstop, late
    assert state() == (("failed", "load failed: out of disk"), [(LOAD_ALERT, False)])


class FailedBill(FailedTask):
    dag_id, run_id, task_id = "agent_billing", "asset_triggered__2026-11-03T02:10:00+00:00", "bill"


@pytest.mark.parametrize(("dag_id", "ti"), [("vsa_asset_sync", FailedStep()), ("agent_billing", FailedBill())])
def test_a_task_s_own_alert_after_the_backstop_s_was_sent_follows_it_at_once_with_the_error(
        dagbag, warehouse, smtp_inbox, monkeypatch, dag_id, ti):
    """A slow failure callback (a slow warehouse) can still be running when the watcher finds
    the task failed and mails its backstop alert, saying the task was killed: the task's own
    alert then follows with the error, once, and is sent at once (the run's deliveries are
    over), instead of being dropped because its id was sent."""
    from agent_billing.sync.notify import FOLLOW_UP, KILLED

    monkeypatch.setenv("AGENT_BILLING_DATA_TEAM_EMAILS", DATA_TEAM)
    [callback] = as_list(dagbag.get_dag(dag_id).get_task(ti.task_id).on_failure_callback)

    def outbox() -> list[tuple]:
        with warehouse.connect() as conn:
            return [(m, subject, KILLED in body, "out of disk" in body, sent is not None)
                    for m, subject, body, sent in conn.execute(text(
                        "SELECT message_id, subject, body, sent_at FROM notification_outbox "
                        "ORDER BY created_at, message_id"))]

    callback({"ti": ti, "exception": KILLED, "backstop": True})
    [(backstop, subject, killed, with_error, sent)] = outbox()
    assert killed and not with_error and not sent and ti.run_id in backstop and ti.task_id in backstop
    from agent_billing.sync.notify import queue_message
    from outbox_delivery import deliver_pending_mail

    deliver_pending_mail()  # the watcher delivers it
    with warehouse.begin() as conn:  # another run's mail, queued since: its own run's notify sends it
        queue_message(conn, "unit-changes:C-OTHER:2026-11-04", "unit_changes", ["billing@other.example"],
                      "[agent-billing] Unit changes", "S: 3 -> 4")
    for _ in range(2):  # the task's own callback, late (and again: the run cleared, failing again)
        callback({"ti": ti, "exception": RuntimeError("out of disk")})
    assert outbox() == [(backstop, subject, True, False, True),
                        ("unit-changes:C-OTHER:2026-11-04", "[agent-billing] Unit changes", False, False, False),
                        (f"{backstop}:error", f"{subject}: its error", False, True, True)]
    mails = [message_from_bytes(m.content, policy=policy.default) for m in smtp_inbox.messages]
    assert [str(m["Subject"]) for m in mails] == [subject, f"{subject}: its error"]
    assert mails[1].get_content().startswith(FOLLOW_UP)


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_each_run_that_fails_a_step_is_alerted_and_a_cleared_one_once(dagbag, warehouse, monkeypatch):
    """A re-run (or backfill) of a date failing again at the same step is news to the data team,
    by the step's own callback or by the backstop of a killed one; the same run cleared and
    failing again is not."""
    from agent_billing.sync.notify import KILLED

    monkeypatch.setenv("AGENT_BILLING_DATA_TEAM_EMAILS", DATA_TEAM)
    [callback] = as_list(dagbag.get_dag("vsa_asset_sync").get_task("load").on_failure_callback)

    def alerts() -> list[str]:
        with warehouse.connect() as conn:
            return conn.execute(text("SELECT message_id FROM notification_outbox ORDER BY created_at")).scalars().all()

    callback({"ti": FailedStep(), "exception": RuntimeError("out of disk")})
    callback({"ti": FailedStep(), "exception": RuntimeError("out of disk")})  # the run cleared, failing again
    assert alerts() == [LOAD_ALERT]
    rerun = FailedStep()
    rerun.run_id = "manual__2026-11-04T08:00:00+00:00"
    callback({"ti": rerun, "exception": RuntimeError("out of disk")})
    killed = FailedStep()
    killed.run_id = "backfill__2026-11-03T02:00:00+00:00"
    callback({"ti": killed, "exception": KILLED, "backstop": True})  # killed before its own callback
    assert alerts() == [LOAD_ALERT, "failure:2026-11-03:load:manual__2026-11-04T08:00:00+00:00",
                        "failure:2026-11-03:load:backfill__2026-11-03T02:00:00+00:00"]


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_the_backstop_alerts_a_step_killed_on_a_date_an_earlier_run_failed_and_spares_the_gate(
        dagbag, warehouse, monkeypatch):
    from agent_billing.sync.notify import KILLED
    from agent_billing.sync.runs import record_run

    monkeypatch.setenv("AGENT_BILLING_DATA_TEAM_EMAILS", DATA_TEAM)
    dag = dagbag.get_dag("vsa_asset_sync")
    [load] = as_list(dag.get_task("load").on_failure_callback)
    [validate] = as_list(dag.get_task("validate").on_failure_callback)
    with warehouse.begin() as conn:  # the night failed at extract yesterday; re-run, load was killed
        record_run(conn, date(2026, 11, 3), "failed", message="extract failed: VSA 503")
    load({"ti": FailedStep(), "exception": KILLED, "backstop": True})
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT message FROM sync_runs")).scalar() == f"load failed: {KILLED}"
        assert conn.execute(text("SELECT message_id FROM notification_outbox")).scalars().all() == [LOAD_ALERT]
        body = conn.execute(text("SELECT body FROM notification_outbox")).scalar()
    assert ("run the night again: clear the failed task of its vsa_asset_sync run, or "  # the way back
            "`agent-billing sync --date 2026-11-03`") in body

    gate = "quality gate failed for snapshot 2026-11-03: agents.expect_column_values_to_be_unique(agent_id)"
    with warehouse.begin() as conn:  # yesterday's gate failed; today the re-run's count was killed
        record_run(conn, date(2026, 11, 3), "failed", message=gate)
    [count] = as_list(dag.get_task("count").on_failure_callback)
    count({"ti": step_of("count"), "exception": KILLED, "backstop": True})
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT message FROM sync_runs")).scalar() == f"count failed: {KILLED}"
        assert conn.execute(text("SELECT COUNT(*) FROM notification_outbox")).scalar() == 2
    with warehouse.begin() as conn:  # a complete date re-run, its gate failed (recorded by the step)
        record_run(conn, date(2026, 11, 3), "complete", message=gate)
    validate({"ti": step_of("validate"), "exception": KILLED, "backstop": True})
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT status, message FROM sync_runs")).one() == ("complete", gate)
        assert conn.execute(text("SELECT COUNT(*) FROM notification_outbox")).scalar() == 2


def test_the_backstop_mails_a_killed_task_when_the_warehouse_is_down(dagbag, broken_warehouse, smtp_inbox):
    """It cannot tell whether the task mailed its own alert (no outbox): better two mails, the
    watcher's saying so, than none for a task that was killed. It does not claim a kill: most
    often the task did alert, with this same warehouse as its error."""
    from agent_billing.sync.notify import KILLED
    from data_team_alerts import alert_data_team

    [load] = as_list(dagbag.get_dag("vsa_asset_sync").get_task("load").on_failure_callback)
    load({"ti": FailedStep(), "exception": KILLED, "backstop": True})
    alert_data_team({"ti": FailedTask(), "exception": KILLED, "backstop": True})
    assert smtp_inbox.subjects() == ["[agent-billing] Sync of 2026-11-03 failed at load",
                                     "[agent-billing] vsa_asset_sync failed at load"]
    for message in smtp_inbox.messages:
        body = message_from_bytes(message.content, policy=policy.default).get_content()
        assert ("could not read the warehouse to see whether the task alerted itself: if an alert of the task "
                "reached you, it carries the error") in body, body
        assert "found no alert of its own" not in body
