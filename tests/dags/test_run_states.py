"""Run states tell the truth, through Airflow (dag.test): an input error fails its task at
once (one try, no retry delay), mail is still delivered, the data team is alerted, and the
run is failed; a gap night shows a task of its own."""

from __future__ import annotations

from datetime import date
from email import message_from_bytes, policy

import pendulum
import pytest
from sqlalchemy import text

from vsa_simulator.generated import GeneratedScenario
from vsa_simulator.testing import run_simulator

from .conftest import task_states, task_tries

DATA_TEAM = "data@msp.example"


def fail_fast_call(function):
    from run_states import fail_fast

    return fail_fast(function)()


def raises(exc):
    def function():
        raise exc

    return function


def test_an_input_error_fails_at_once_and_a_transient_one_keeps_its_retries():
    from airflow.sdk.exceptions import AirflowFailException

    from agent_billing.errors import UserError
    from agent_billing.sync.notify import DeliveryFailed
    from agent_billing.vsa.errors import VsaHttpError, VsaUnreachable

    with pytest.raises(AirflowFailException, match="service 'X' not found") as failed:
        fail_fast_call(raises(UserError("service 'X' not found")))
    assert isinstance(failed.value.__cause__, UserError)  # callbacks can still tell what it was
    with pytest.raises(AirflowFailException):  # 404: asking again will not help
        fail_fast_call(raises(VsaHttpError("not found", status=404, host="vsa")))
    with pytest.raises(AirflowFailException, match="refused"):  # a retry would send nothing and end green
        fail_fast_call(raises(DeliveryFailed("1 sent but refused by some recipients", refused=True)))
    for transient in (VsaHttpError("throttled", status=429, host="vsa"),
                      VsaHttpError("down", status=503, host="vsa"),
                      VsaUnreachable("refused", host="vsa"),
                      DeliveryFailed("1 message(s) not sent"),
                      ConnectionError("database went away")):
        with pytest.raises(type(transient)):
            fail_fast_call(raises(transient))
    assert fail_fast_call(lambda: 42) == 42


def alerts(warehouse) -> list[tuple[str, str, str | None]]:
    with warehouse.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT message_id, recipients, sent_at FROM notification_outbox "
            "WHERE kind = 'failure' ORDER BY message_id"))]


def press_for_an_unknown_service(fresh_dag, monkeypatch):
    """Get Units Now for a service the warehouse does not have, through dag.test: a failed run."""
    monkeypatch.setenv("AGENT_BILLING_DATA_TEAM_EMAILS", DATA_TEAM)
    world = GeneratedScenario(seed=1, orgs=1, agents=5, start=date(2024, 1, 1))
    with run_simulator(world, date=date(2024, 1, 2)) as vsa:
        monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", vsa.connection_json())
        run = fresh_dag("get_units_now").test(run_conf={"service_id": "NO-SUCH-SERVICE"})
    assert run.state == "failed"
    assert task_states(run) == {
        "count_service_now": "failed", "notify": "success", "fail_if_work_failed": "failed"}
    return run


@pytest.mark.slow
@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_get_units_now_for_an_unknown_service_fails_at_once_alerts_and_fails_the_run(
        fresh_dag, warehouse, smtp_inbox, monkeypatch):
    run = press_for_an_unknown_service(fresh_dag, monkeypatch)
    assert task_tries(run)["count_service_now"] == 1  # no retry: the default would be 3 tries
    message_id = f"task-failure:get_units_now:{run.run_id}:count_service_now"
    [(got_id, recipients, sent_at)] = alerts(warehouse)
    assert (got_id, recipients) == (message_id, DATA_TEAM) and sent_at is not None  # notify sent it
    assert smtp_inbox.subjects() == ["[agent-billing] get_units_now failed at count_service_now"]
    body = smtp_inbox.messages[0].content.decode()
    assert "service 'NO-SUCH-SERVICE' not found" in body


@pytest.mark.slow
@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_task_killed_before_its_callback_still_alerts_through_the_watcher(
        fresh_dag, warehouse, smtp_inbox, monkeypatch):
    """A task whose process dies on its last try (out of memory, a lost worker) ends failed
    without its on_failure_callback: the watcher alerts for it, sends the mail, fails the run."""
    from airflow.sdk.execution_time import task_runner

    run_callbacks = task_runner._run_task_state_change_callbacks

    def killed_before_failure_callbacks(task, kind, context, log):
        if kind != "on_failure_callback":
            run_callbacks(task, kind, context, log)

    monkeypatch.setattr(task_runner, "_run_task_state_change_callbacks", killed_before_failure_callbacks)
    run = press_for_an_unknown_service(fresh_dag, monkeypatch)
    [(message_id, recipients, sent_at)] = alerts(warehouse)
    assert message_id == f"task-failure:get_units_now:{run.run_id}:count_service_now"
    assert recipients == DATA_TEAM and sent_at is not None  # sent by the watcher: notify ran before
    [mail] = smtp_inbox.messages
    body = message_from_bytes(mail.content, policy=policy.default).get_content()
    assert "count_service_now" in body and "killed before it could report an error" in body


@pytest.mark.slow
@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("mistake", "message"), [
    ("no VSA connection", "the Airflow connection 'vsa_default' is not defined: add it"),
    ("an invalid setting", "invalid setting(s): AGENT_BILLING_LATE_OBSERVATION='yes'"),
    ("a warehouse never upgraded", "empty.db has no agent-billing schema: run `agent-billing db upgrade`"),
    # Airflow calls a connection it cannot parse undefined (its reason logged at DEBUG only)
    ("a malformed VSA connection", "AIRFLOW_CONN_VSA_DEFAULT is not valid JSON"),
    ("a warehouse that is no database", "notes.txt: file is not a database (fix the Airflow connection "
                                        "'billing_warehouse'"),
])
def test_a_configuration_mistake_fails_at_once_instead_of_spending_retries(
        fresh_dag, warehouse, tmp_path, monkeypatch, capfd, mistake, message):
    """A missing connection, a wrong AGENT_BILLING_* value or a warehouse without its schema
    cannot succeed on a retry: the task fails on its first try, saying what to fix."""
    from agent_billing.warehouse import connect_warehouse

    monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", "http://integrator:token@127.0.0.1:1")
    if mistake == "no VSA connection":
        monkeypatch.delenv("AIRFLOW_CONN_VSA_DEFAULT")
    elif mistake == "an invalid setting":
        monkeypatch.setenv("AGENT_BILLING_LATE_OBSERVATION", "yes")
    elif mistake == "a malformed VSA connection":
        monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", '{"conn_type": "http", "host": "http://127.0.0.1:1", '
                           '"extra": {"max_retries": 1,}}')
    elif mistake == "a warehouse that is no database":  # the same on every try, as a refused login
        (tmp_path / "notes.txt").write_text("minutes of the meeting\n" * 200)
        monkeypatch.setenv("AIRFLOW_CONN_BILLING_WAREHOUSE", f"sqlite:///{tmp_path}/notes.txt")
    else:
        empty = f"sqlite:///{tmp_path}/empty.db"  # a database file, without the schema
        engine = connect_warehouse(empty)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE notes (line TEXT)"))
        engine.dispose()
        monkeypatch.setenv("AIRFLOW_CONN_BILLING_WAREHOUSE", empty)
    run = fresh_dag("get_units_now").test(run_conf={"service_id": "S-ANY"})

    assert run.state == "failed"
    assert task_states(run)["count_service_now"] == "failed"
    assert task_tries(run)["count_service_now"] == 1  # no retry: the default would be 3 tries
    assert message in "".join(capfd.readouterr())  # the task log says what to fix


@pytest.mark.slow
@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("dag_id", ["get_units_now", "vsa_asset_sync"])
def test_an_invalid_setting_still_reaches_the_data_team(
        fresh_dag, warehouse, smtp_inbox, monkeypatch, dag_id):
    """AGENT_BILLING_QUARANTINE_SHARE=20 (meant 20 %) fails every task at once; the alert of that
    failure read its recipients from the same invalid settings, so it failed too, and the
    notify task with it: a nightly run red in the UI and nobody told. The sender and the data
    team are read on their own, and the alert names the setting."""
    monkeypatch.setenv("AGENT_BILLING_DATA_TEAM_EMAILS", DATA_TEAM)
    monkeypatch.setenv("AGENT_BILLING_QUARANTINE_SHARE", "20")
    monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", "http://integrator:token@127.0.0.1:1")
    dag = fresh_dag(dag_id)
    if dag_id == "get_units_now":
        run, step = dag.test(run_conf={"service_id": "S-ANY"}), "count_service_now"
    else:
        monkeypatch.setattr(dag, "deadline", None)  # dag.test's deadline artefact (conftest.sync_dag)
        run, step = dag.test(run_conf={"snapshot_date": "2024-01-02"}), "resolve_snapshot_date"
    assert run.state == "failed" and task_states(run)[step] == "failed"
    assert task_states(run)["notify"] == "success"  # the alert went out
    [mail] = smtp_inbox.messages
    assert mail.rcpt_tos == [DATA_TEAM]
    body = message_from_bytes(mail.content, policy=policy.default).get_body().get_content()
    assert "invalid setting(s): AGENT_BILLING_QUARANTINE_SHARE='20'" in body


@pytest.mark.slow
@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_mistyped_warehouse_path_fails_notify_at_once_and_creates_nothing(fresh_dag, warehouse, tmp_path, monkeypatch):
    """The warehouse connection names a SQLite file that is not there: the work fails at once
    naming `db upgrade`, and so does notify (which takes a schema of any revision): it created
    an empty file at the mistyped path and failed on "no such table", retried for minutes."""
    missing = tmp_path / "warehuose.db"
    monkeypatch.setenv("AIRFLOW_CONN_BILLING_WAREHOUSE", f"sqlite:///{missing}")
    monkeypatch.setenv("AGENT_BILLING_DATA_TEAM_EMAILS", DATA_TEAM)
    run = fresh_dag("agent_billing").test(run_conf={"as_of": "2024-03-01"})
    assert run.state == "failed"
    assert task_states(run)["notify"] == "failed" and task_tries(run)["notify"] == 1
    assert not missing.exists()


@pytest.mark.slow
@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_agent_billing_without_a_date_to_bill_fails_at_once_alerts_and_fails_the_run(
        fresh_dag, warehouse, smtp_inbox, monkeypatch):
    monkeypatch.setenv("AGENT_BILLING_DATA_TEAM_EMAILS", DATA_TEAM)
    run = fresh_dag("agent_billing").test(run_conf={"as_of": None})  # by hand, no as_of

    assert run.state == "failed"
    assert task_states(run) == {
        "resolve_dates": "failed", "bill": "upstream_failed", "notify": "success",
        "fail_if_work_failed": "failed"}
    assert task_tries(run)["resolve_dates"] == 1
    assert [a[:2] for a in alerts(warehouse)] == [
        (f"task-failure:agent_billing:{run.run_id}:resolve_dates", DATA_TEAM)]


@pytest.mark.slow
@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_misspelt_param_fails_the_run_at_once_instead_of_running_on_the_default(
        sync_dag, warehouse, smtp_inbox, monkeypatch):
    """Airflow takes any key in a run's conf: `snapshot_dat` would sync today's night, green."""
    monkeypatch.setenv("AGENT_BILLING_DATA_TEAM_EMAILS", DATA_TEAM)
    run = sync_dag.test(run_conf={"snapshot_dat": "2024-01-02"})

    assert run.state == "failed"
    states = task_states(run)
    assert states["resolve_snapshot_date"] == "failed" and task_tries(run)["resolve_snapshot_date"] == 1
    assert {states[t] for t in ("route", "extract", "load", "count", "diff")} == {"upstream_failed"}
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM sync_runs")).scalar() == 0  # no night touched
        body = conn.execute(text("SELECT body FROM notification_outbox")).scalar()
    assert "the run's conf has 'snapshot_dat', which this DAG does not take (its params: " in body


@pytest.mark.slow
@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_gap_night_is_a_green_run_with_gap_recorded_and_sync_runs_gap(sync_dag, warehouse, tmp_path, monkeypatch):
    monkeypatch.setenv("AGENT_BILLING_RAW_PATH", str(tmp_path / "raw"))  # nothing landed
    monkeypatch.setenv("AGENT_BILLING_LATE_OBSERVATION", "refuse")
    monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", '{"conn_type": "http", "host": "http://127.0.0.1:9", '
                                                   '"login": "u", "password": "never-used"}')
    logical = pendulum.datetime(2024, 2, 5, 2, tz="UTC")  # long past the 36 h grace window
    run = sync_dag.test(logical_date=logical)

    assert run.state == "success"
    states = task_states(run)
    assert (states["extract"], states["gap_recorded"], states["notify"]) == ("success",) * 3
    assert all(states[t] == "skipped" for t in ("load", "validate", "count", "diff", "publish",
                                                  "quarantine_action", "fail_if_work_failed", "missed_nights_recorded"))
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT status FROM sync_runs")).scalar() == "gap"


@pytest.mark.slow
@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_nights_no_run_took_show_in_the_grid_of_the_night_that_records_them(
        sync_dag, warehouse, smtp_inbox, tmp_path, monkeypatch):
    """The scheduler was down from the 2nd to the 4th: the run of the 5th records those nights as
    gaps, and missed_nights_recorded runs (green) so that the grid shows it; the 5th itself is a
    gap too here (no landing, long past)."""
    monkeypatch.setenv("AGENT_BILLING_RAW_PATH", str(tmp_path / "raw"))
    monkeypatch.setenv("AGENT_BILLING_LATE_OBSERVATION", "refuse")
    monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", '{"conn_type": "http", "host": "http://127.0.0.1:9", '
                                                   '"login": "u", "password": "never-used"}')
    with warehouse.begin() as conn:
        conn.execute(text("INSERT INTO sync_runs (snapshot_date, status) VALUES ('2024-02-01', 'complete')"))
    (tmp_path / "raw" / "2024-02-01").mkdir(parents=True)  # the raw volume is mounted (the 1st's folder)
    run = sync_dag.test(logical_date=pendulum.datetime(2024, 2, 5, 2, tz="UTC"))

    assert run.state == "success"
    states = task_states(run)
    assert (states["extract"], states["gap_recorded"], states["missed_nights_recorded"]) == ("success",) * 3
    with warehouse.connect() as conn:
        statuses = {str(d)[:10]: s for d, s in conn.execute(text("SELECT snapshot_date, status FROM sync_runs"))}
    assert statuses == {"2024-02-01": "complete", "2024-02-02": "gap", "2024-02-03": "gap", "2024-02-04": "gap",
                        "2024-02-05": "gap"}


@pytest.mark.slow
@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_quarantined_night_is_a_green_run_with_quarantine_recorded(fresh_dag, warehouse, tmp_path, monkeypatch):
    """A night the quarantine holds is no failure (nothing broke; a person decides), but the grid
    names it, as it names a gap: quarantine_recorded runs, publish is skipped. On a complete
    night quarantine_recorded is skipped."""
    from agent_billing.contracts import apply_contracts

    world = GeneratedScenario(seed=3, orgs=1, agents=30, start=date(2024, 1, 1))
    first, second = date(2024, 2, 1), date(2024, 2, 2)
    org = world.state(first).orgs.record(world.state(first).orgs.handles[0])
    apply_contracts(warehouse, {"accounts": [{"account_id": "A1", "name": "Org one", "vsa_org_id": org["OrgId"],
        "contracts": [{"contract_id": "C1", "currency": "EUR", "start_date": "2024-01-01", "services": [
            {"service_id": "ORG", "name": "All", "unit_price": "5", "units_source": "rmm_agent_count",
             "start_date": "2024-01-01"}]}]}]})
    monkeypatch.setenv("AGENT_BILLING_RAW_PATH", str(tmp_path / "raw"))
    monkeypatch.setenv("AGENT_BILLING_LATE_OBSERVATION", "allow")  # nights of 2024, run today
    dag = fresh_dag("vsa_asset_sync")
    monkeypatch.setattr(dag, "deadline", None)  # see the sync_dag fixture
    with run_simulator(world, date=first) as vsa:
        monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", vsa.connection_json())
        complete = dag.test(logical_date=pendulum.datetime(2024, 2, 1, 2, tz="UTC"))
        vsa.set_date(second)
        vsa.set_hidden_orgs([org["OrgRef"]])
        held = dag.test(logical_date=pendulum.datetime(2024, 2, 2, 2, tz="UTC"))
    assert (complete.state, held.state) == ("success", "success")
    states = task_states(complete)
    assert (states["diff"], states["publish"], states["quarantine_recorded"]) == ("success", "success", "skipped")
    states = task_states(held)
    assert (states["diff"], states["quarantine_recorded"], states["notify"]) == ("success",) * 3
    assert states["publish"] == "skipped" and states["fail_if_work_failed"] == "skipped"
    with warehouse.connect() as conn:
        statuses = {str(d)[:10]: v for d, v in conn.execute(text("SELECT snapshot_date, status FROM sync_runs"))}
    assert statuses == {str(first): "complete", str(second): "quarantined"}


@pytest.mark.slow
@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_backfill_that_holds_a_later_night_shows_quarantine_recorded(
        fresh_dag, warehouse, smtp_inbox, tmp_path, monkeypatch):
    """A missed night backfilled behind the nights that ran can reveal a later night's drop: the
    later night is judged again and held. The backfill's own night is complete and billable, so
    its run is green and publishes; quarantine_recorded runs too and names the later night, so
    the grid shows a night waiting for a person."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from agent_billing.contracts import apply_contracts

    from ..sync.conftest import CONTRACT, G_WS, write_landing

    apply_contracts(warehouse, CONTRACT)
    raw = tmp_path / "raw"
    d1, d2, d3 = date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)
    for night, agents in ((d1, 4), (d2, 8), (d3, 3)):  # against d1's 4, d3's 3 is no drop; against d2's 8 it is
        write_landing(raw, night, {f"a{k}": (G_WS, 1) for k in range(1, agents + 1)}, set())
    monkeypatch.setenv("AGENT_BILLING_RAW_PATH", str(raw))
    monkeypatch.setenv("AGENT_BILLING_QUARANTINE_SHARE", "0.30")
    monkeypatch.setenv("AGENT_BILLING_QUARANTINE_MIN_AGENTS", "1")
    monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", '{"conn_type": "http", "host": "http://127.0.0.1:9", '
                                                   '"login": "u", "password": "never-used"}')  # landed: not called
    dag = fresh_dag("vsa_asset_sync")
    monkeypatch.setattr(dag, "deadline", None)  # see the sync_dag fixture
    runs = {night: dag.test(logical_date=pendulum.datetime(night.year, night.month, night.day, 2, tz="UTC"))
            for night in (d1, d3, d2)}

    assert {night: run.state for night, run in runs.items()} == {d1: "success", d3: "success", d2: "success"}
    assert task_states(runs[d3])["quarantine_recorded"] == "skipped"  # 4 → 3 then: an ordinary night
    states = task_states(runs[d2])
    assert (states["diff"], states["publish"], states["quarantine_recorded"]) == ("success",) * 3
    with create_session() as session:
        xcom = session.scalars(XComModel.get_many(run_id=runs[d2].run_id, dag_ids="vsa_asset_sync",
                                                  task_ids="quarantine_recorded", key="return_value")).one()
        assert XComModel.deserialize_value(xcom) == [str(d3)]
    with warehouse.connect() as conn:
        statuses = {str(d)[:10]: v for d, v in conn.execute(text("SELECT snapshot_date, status FROM sync_runs"))}
    assert statuses == {str(d1): "complete", str(d2): "complete", str(d3): "quarantined"}


@pytest.mark.slow
@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_releasing_a_snapshot_that_is_not_quarantined_fails_at_once_and_alerts(
        fresh_dag, warehouse, smtp_inbox, monkeypatch):
    from airflow.models.deadline import Deadline
    from airflow.utils.session import create_session

    monkeypatch.setenv("AGENT_BILLING_DATA_TEAM_EMAILS", DATA_TEAM)
    with warehouse.begin() as conn:
        conn.execute(text("INSERT INTO sync_runs (snapshot_date, status) VALUES ('2024-02-05', 'complete')"))
    run = fresh_dag("vsa_asset_sync").test(
        run_conf={"snapshot_date": "2024-02-05", "quarantine_action": "release"})

    assert run.state == "failed"
    states = task_states(run)
    assert (states["quarantine_action"], states["notify"], states["fail_if_work_failed"]) == (
        "failed", "success", "failed")
    assert states["publish"] == "upstream_failed" and states["extract"] == "skipped"
    assert task_tries(run)["quarantine_action"] == 1
    assert [a[:2] for a in alerts(warehouse)] == [
        (f"task-failure:vsa_asset_sync:{run.run_id}:quarantine_action", DATA_TEAM)]
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT status FROM sync_runs")).scalar() == "complete"  # untouched
    # The run carried the nightly deadline (a successful run's is pruned): logical date + (06:00 − 02:00).
    with create_session() as session:
        [deadline] = session.query(Deadline).filter(Deadline.dagrun_id == run.id).all()
    assert deadline.deadline_time == run.logical_date + pendulum.duration(hours=4)


@pytest.mark.slow
@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_quarantine_decision_without_its_night_fails_at_once_never_on_a_default_date(
        fresh_dag, warehouse, smtp_inbox, monkeypatch):
    monkeypatch.setenv("AGENT_BILLING_DATA_TEAM_EMAILS", DATA_TEAM)
    run = fresh_dag("vsa_asset_sync").test(run_conf={"quarantine_action": "release"})

    assert run.state == "failed"
    states = task_states(run)
    assert states["resolve_snapshot_date"] == "failed" and task_tries(run)["resolve_snapshot_date"] == 1
    assert states["quarantine_action"] != "success" and states["extract"] != "success"
    assert [a[0] for a in alerts(warehouse)] == [f"task-failure:vsa_asset_sync:{run.run_id}:resolve_snapshot_date"]
    with warehouse.connect() as conn:
        body = conn.execute(text("SELECT body FROM notification_outbox WHERE kind = 'failure'")).scalar()
        assert conn.execute(text("SELECT COUNT(*) FROM sync_runs")).scalar() == 0
    assert "quarantine_action 'release' needs the snapshot_date of the night it decides" in body


@pytest.mark.slow
@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_discarded_night_run_again_is_a_green_run_that_changes_nothing_until_reopened(
        sync_dag, fresh_dag, warehouse, tmp_path, monkeypatch):
    monkeypatch.setenv("AGENT_BILLING_RAW_PATH", str(tmp_path / "raw"))  # nothing landed: VSA never asked
    monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", '{"conn_type": "http", "host": "http://127.0.0.1:9", '
                                                   '"login": "u", "password": "never-used"}')
    with warehouse.begin() as conn:
        conn.execute(text("INSERT INTO sync_runs (snapshot_date, status, message, updated_at) VALUES "
                          "('2024-02-05', 'discarded', 'discarded after quarantine: …', CURRENT_TIMESTAMP)"))
    run = sync_dag.test(logical_date=pendulum.datetime(2024, 2, 5, 2, tz="UTC"))
    assert run.state == "success"
    states = task_states(run)
    assert all(states[t] == "success" for t in ("extract", "load", "validate", "count", "diff", "publish"))
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT status FROM sync_runs")).scalar() == "discarded"

    # Parsed anew: the run_conf stays in a tested DAG's params. Without its deadline alert: a DAG
    # parsed anew fails to prune it when its run ends green under dag.test (a test-only limit).
    reopen = fresh_dag("vsa_asset_sync")
    reopen.deadline = None
    run = reopen.test(run_conf={"snapshot_date": "2024-02-05", "quarantine_action": "reopen"})
    assert run.state == "success" and task_states(run)["quarantine_action"] == "success"
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT status FROM sync_runs")).scalar() == "failed"


@pytest.mark.slow
@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_mail_waiting_without_an_smtp_connection_fails_notify_and_the_run(fresh_dag, warehouse, monkeypatch):
    """Alerts queued for the data team while no ``smtp_default`` is defined would never go out:
    ``notify`` fails at once (no retries) and the run is failed, instead of a green run."""
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    monkeypatch.setenv("AGENT_BILLING_DATA_TEAM_EMAILS", DATA_TEAM)
    run = fresh_dag("agent_billing").test(run_conf={"as_of": None})

    assert run.state == "failed"
    assert task_states(run)["notify"] == "failed" and task_tries(run)["notify"] == 1
    [(_, recipients, sent_at)] = alerts(warehouse)[:1]
    assert (recipients, sent_at) == (DATA_TEAM, None)  # kept for the next delivery
