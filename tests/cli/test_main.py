"""The command line's shared behaviour: common options anywhere, bugs still fail loudly, quiet
output, the demo's home, and a sync whose exit code is the sync's."""

from __future__ import annotations

import errno
import re
import socket
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text

from agent_billing import cli
from agent_billing.cli import db_cmds
from agent_billing.contracts import apply_contracts
from agent_billing.errors import UserError
from agent_billing.wording import units_text
from agent_billing_demo.demo import HOME_MARKER, prepare_home

from .conftest import run_cli


@pytest.mark.parametrize(
    ("argv", "verbose", "debug"),
    [
        (["bill", "--as-of", "2025-01-01"], False, False),
        (["-v", "bill", "--as-of", "2025-01-01"], True, False),
        (["bill", "--as-of", "2025-01-01", "-v"], True, False),
        (["bill", "--as-of", "2025-01-01", "--verbose", "--debug"], True, True),
        (["invoices", "export", "--month", "2025-01", "--debug"], False, True),
        (["--debug", "snapshots", "release", "2025-01-01", "-v"], True, True),
    ],
)
def test_common_options_work_before_and_after_the_subcommand(argv, verbose, debug):
    args = cli.build_parser().parse_args(argv)
    assert (args.verbose, args.debug) == (verbose, debug)


def test_a_bug_fails_with_one_line_and_the_traceback_only_with_debug(monkeypatch, capsys):
    def broken(_args):
        return {}["missing"]

    monkeypatch.setattr(db_cmds, "_upgrade", broken)
    assert cli.main(["db", "upgrade"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "agent-billing db upgrade: error: unexpected KeyError: 'missing' (re-run with --debug for the traceback)"
    ]
    assert cli.main(["db", "upgrade", "--debug"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "KeyError" in err
    assert err.splitlines()[-1].startswith("agent-billing db upgrade: error: unexpected KeyError")


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/data/x.csv"), 1,
         "/data/x.csv: No space left on device"),
        (PermissionError(errno.EACCES, "Permission denied", "/etc/x.csv"), 2,
         "/etc/x.csv: Permission denied"),
        (UserError("service S-1 not found"), 2, "service S-1 not found"),
    ],
)
def test_explain_gives_the_exit_code_of_the_kind_of_error(exc, code, message):
    assert cli.explain(exc) == (message, code)


def test_no_message_shows_a_configured_password(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", "smtp://mailer:hunter2-x@mail.example:587")
    message, _ = cli.explain(RuntimeError("login mailer:hunter2-x refused"))
    assert "hunter2" not in message and "mailer:***" in message


def test_help_imports_no_database_or_airflow_library():
    """``agent-billing --help`` stays instant: the command modules import their libraries
    inside the handlers (SQLAlchemy and Alembic alone took 0.27 s)."""
    import subprocess
    import sys

    probe = ("import sys; from agent_billing.cli import build_parser; build_parser(); "
             "print(sorted(m for m in ('sqlalchemy', 'alembic', 'pandas', 'great_expectations', "
             "'airflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.slow
def test_the_demo_from_an_operator_s_shell_touches_none_of_its_deployment(tmp_path):
    """An operator's shell exports the production metadata database, warehouse and mail
    server: the demo runs on its own home and leaves all three alone."""
    production = tmp_path / "production"
    production.mkdir()
    run = run_cli("demo", "--home", str(tmp_path / "home"), "--nights", "2", "--orgs", "2", "--agents", "40",
                  env={"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{production}/airflow.db",
                       "AIRFLOW_CONN_BILLING_WAREHOUSE": f"sqlite:///{production}/warehouse.db",
                       "AIRFLOW_CONN_SMTP_DEFAULT": _smtp_url(_free_port()),
                       "AGENT_BILLING_TIMEZONE": "Pacific/Kiritimati"})
    assert run.code == 0, run.stderr
    assert list(production.iterdir()) == []
    assert (tmp_path / "home" / "warehouse.db").is_file() and (tmp_path / "home" / "airflow" / "airflow.db").is_file()
    assert "invoices export --month 2025-01 --format csv" in run.stdout  # the month its invoices are of


def test_the_schema_is_upgraded_whatever_the_settings(tmp_path):
    """A deployment's first step migrates the warehouse; a bad setting stops the commands that
    read settings, not the migration that reads none (the stack would wait on it forever)."""
    env = {"AIRFLOW_CONN_BILLING_WAREHOUSE": f"sqlite:///{tmp_path / 'w.db'}", "AGENT_BILLING_NOTIFY_FROM": ""}
    assert run_cli("db", "upgrade", env=env).code == 0
    refused = run_cli("review", env=env)
    assert refused.code == 2 and "AGENT_BILLING_NOTIFY_FROM=''" in refused.stderr
    # a name in lower case is the setting, as it is read (case does not matter)
    lower = run_cli("review", env={**env, "AGENT_BILLING_NOTIFY_FROM": None, "AGENT_BILLING_timezone": "UTC"})
    assert (lower.code, lower.stderr) == (0, ""), lower.stderr


def test_quiet_by_default(tmp_path):
    env = {"AIRFLOW_CONN_BILLING_WAREHOUSE": f"sqlite:///{tmp_path / 'w.db'}"}
    created = run_cli("db", "upgrade", env=env)
    assert (created.code, created.stderr) == (0, "")
    assert created.stdout.endswith("(upgraded from an empty database)\n")
    again = run_cli("db", "upgrade", env=env)
    assert (again.code, again.stderr) == (0, "") and again.stdout.endswith("(unchanged)\n")
    review = run_cli("review", env=env)
    assert (review.code, review.stdout, review.stderr) == (0, "no pending lines\n", "")
    loud = run_cli("review", "-v", env=env)
    assert loud.code == 0 and "INFO alembic.runtime.migration" in loud.stderr


def test_demo_home_new_empty_or_its_own_is_used_anything_else_refused(tmp_path):
    new = tmp_path / "new" / "home"
    prepare_home(new)
    assert [p.name for p in new.iterdir()] == [HOME_MARKER]

    (new / "warehouse.db").write_text("an earlier demo")
    prepare_home(new)  # the demo's own home is emptied
    assert [p.name for p in new.iterdir()] == [HOME_MARKER]

    empty = tmp_path / "empty"
    empty.mkdir()
    prepare_home(empty)
    assert (empty / HOME_MARKER).is_file()

    foreign = tmp_path / "foreign"
    (foreign / "sub").mkdir(parents=True)
    (foreign / "sub" / "thesis.tex").write_text("years of work")
    with pytest.raises(UserError, match="not empty and was not created by the demo"):
        prepare_home(foreign)
    assert (foreign / "sub" / "thesis.tex").read_text() == "years of work"
    assert not (foreign / HOME_MARKER).exists()

    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        prepare_home(a_file)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _smtp_url(port: int) -> str:
    return f"smtp://127.0.0.1:{port}?disable_ssl=true&disable_tls=true&from_email=billing@msp.example"


@pytest.mark.parametrize("warehouse_url", ["sqlite", "postgresql"], indirect=True)
def test_sync_succeeds_when_only_mail_fails_and_the_next_delivery_sends_it(warehouse, warehouse_url, tmp_path, local_smtp):

    from vsa_simulator.generated import GeneratedScenario
    from vsa_simulator.testing import run_simulator

    start = date(2024, 2, 1)
    world = GeneratedScenario(seed=7, orgs=2, agents=200, start=date(2024, 1, 1), daily_churn=0.05)
    state = world.state(start)
    org = state.orgs.record(state.orgs.handles[0])["OrgId"]
    apply_contracts(warehouse, {"accounts": [{
        "account_id": "A1", "name": "Org one", "vsa_org_id": org,
        "contracts": [{"contract_id": "C1", "currency": "EUR", "start_date": "2024-01-01",
                       "notify_emails": ["billing@org-one.example"], "services": [
            {"service_id": "ALL", "name": "All agents", "unit_price": "5",
             "units_source": "rmm_agent_count", "start_date": "2024-01-01"},
        ]}],
    }]})
    inbox = local_smtp  # listening; the first nights are sent to a port where nothing listens
    env = {
        "AIRFLOW_CONN_BILLING_WAREHOUSE": warehouse_url,
        "AGENT_BILLING_RAW_PATH": str(tmp_path / "raw"),
        "AGENT_BILLING_LATE_OBSERVATION": "allow",
        "AIRFLOW_CONN_SMTP_DEFAULT": _smtp_url(_free_port()),  # nothing listens there
    }
    days = [start + timedelta(days=n) for n in range(3)]
    with run_simulator(world, date=start) as vsa:
        env["AIRFLOW_CONN_VSA_DEFAULT"] = vsa.connection_json()
        for day in days[:2]:
            vsa.set_date(day)
            run = run_cli("sync", "--date", day.isoformat(), env=env)
            assert run.code == 0, run.stderr
            assert '"complete"' in run.stdout
        # the nights' changes were mailed to nobody: one warning line, exit 0
        assert len(run.stderr.splitlines()) == 1, run.stderr
        warning = run.stderr.strip()
        assert re.match(r"agent-billing sync: warning: \d+ message\(s\) not sent via SMTP 127\.0\.0\.1:", warning)
        assert "unsent messages stay in notification_outbox and every delivery retries them" in warning
        with warehouse.connect() as conn:
            unsent = conn.execute(text(
                "SELECT message_id FROM notification_outbox WHERE sent_at IS NULL AND last_error IS NOT NULL"
            )).scalars().all()
        assert unsent

        env["AIRFLOW_CONN_SMTP_DEFAULT"] = _smtp_url(inbox.port)
        vsa.set_date(days[2])
        run = run_cli("sync", "--date", days[2].isoformat(), env=env)
    assert (run.code, run.stderr) == (0, "")
    with warehouse.connect() as conn:
        still_unsent = conn.execute(text(
            "SELECT message_id FROM notification_outbox WHERE sent_at IS NULL"
        )).scalars().all()
    assert still_unsent == []
    assert len(inbox.messages) >= len(unsent)


@pytest.mark.parametrize(
    ("raw", "url"),
    [
        ('{"conn_type": "postgres", "host": "db", "login": "billing", "schema": "wh"}',
         "postgresql+psycopg://billing@db/wh"),
        ('{"host": "db", "login": "billing", "schema": "wh"}', "postgresql+psycopg://billing@db/wh"),
        ('{"conn_type": "sqlite", "host": "/srv/w.db"}', "sqlite:////srv/w.db"),
        ("postgres://billing@db:5432/wh", "postgresql+psycopg://billing@db:5432/wh"),
    ],
)
def test_warehouse_connections_that_work(raw, url):
    from agent_billing.connections import parse_connection
    from agent_billing.warehouse.engine import url_from_connection

    assert url_from_connection(parse_connection("billing_warehouse", raw)) == url


@pytest.mark.parametrize(
    "raw", ["garbage", "/srv/w.db", '{"conn_type": "mysql", "host": "db"}', "http://db/wh"],
)
def test_warehouse_connections_that_cannot_work_name_the_setting(raw, monkeypatch):
    from agent_billing.errors import ConfigurationError
    from agent_billing.warehouse import connect_warehouse

    monkeypatch.setenv("AIRFLOW_CONN_BILLING_WAREHOUSE", raw)
    with pytest.raises(ConfigurationError, match="AIRFLOW_CONN_BILLING_WAREHOUSE"):
        connect_warehouse()


@pytest.mark.parametrize("warehouse_url", ["postgresql"], indirect=True)
def test_driver_errors_outside_sqlalchemy_are_translated_too(warehouse):
    """COPY runs on the psycopg connection: its errors are not wrapped by SQLAlchemy."""
    import psycopg

    with warehouse.connect() as conn:
        raw = conn.connection.driver_connection
        with pytest.raises(psycopg.DataError) as data_error:
            raw.execute("SELECT CAST('1e20' AS NUMERIC(18,4))")
        raw.rollback()
    message, code = cli.explain(data_error.value)
    assert code == 2 and message.startswith("a value does not fit the warehouse's columns: numeric field overflow")
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect("host=127.0.0.1 port=1 user=billing dbname=wh connect_timeout=5")
    message, code = cli.explain(refused.value)
    assert code == 1 and message.startswith("cannot use the warehouse") and "refused" in message


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_units_get_prints_the_change_recorded_and_an_earlier_press_withdrawn(warehouse, warehouse_url, tmp_path):
    """Presses today: the printed change is the day's change as recorded (from the last count),
    and a press back at the last count says that the earlier press's units are withdrawn."""
    from vsa_simulator.generated import GeneratedScenario
    from vsa_simulator.testing import run_simulator

    start = date(2024, 2, 1)
    world = GeneratedScenario(seed=7, orgs=2, agents=200, start=date(2024, 1, 1), daily_churn=0.05)
    org = world.state(start).orgs.record(world.state(start).orgs.handles[0])["OrgId"]
    apply_contracts(warehouse, {"accounts": [{"account_id": "A1", "name": "Org one", "vsa_org_id": org,
        "contracts": [{"contract_id": "C1", "currency": "EUR", "start_date": "2024-01-01", "services": [
            {"service_id": "ALL", "name": "All agents", "unit_price": "5", "units_source": "rmm_agent_count",
             "start_date": "2024-01-01"}]}]}]})
    env = {"AIRFLOW_CONN_BILLING_WAREHOUSE": warehouse_url, "AGENT_BILLING_RAW_PATH": str(tmp_path / "raw"),
           "AGENT_BILLING_LATE_OBSERVATION": "allow"}  # the night of 2024 synced today

    def count(day: date) -> int:
        state = world.state(day)
        return sum(1 for h in state.agents.handles if state.agents.record(h)["OrgId"] == org)

    later = next(start + timedelta(days=n) for n in range(1, 30)
                 if len({count(start), count(start + timedelta(days=n))}) == 2)
    other = next(start + timedelta(days=n) for n in range(1, 30)
                 if len({count(start), count(later), count(start + timedelta(days=n))}) == 3)
    with run_simulator(world, date=start) as vsa:
        env["AIRFLOW_CONN_VSA_DEFAULT"] = vsa.connection_json()
        assert run_cli("sync", "--date", start.isoformat(), env=env).code == 0
        printed = []
        for day in (later, other, start):
            vsa.set_date(day)
            run = run_cli("units", "get", "--service", "ALL", env=env)
            assert run.code == 0, run.stderr
            printed.append(run.stdout.strip())
    today = printed[0].rsplit(" ", 1)[1].rstrip(")")
    assert printed == [
        f"ALL: {units_text(count(later))} (unit change {count(start)} → {count(later)} effective {today})",
        f"ALL: {units_text(count(other))} (unit change {count(start)} → {count(other)} effective {today})",
        f"ALL: {units_text(count(start))} (no change from the last count; today's earlier change {count(start)} → "
        f"{count(other)} is withdrawn)",
    ]


@pytest.mark.parametrize("warehouse_url", ["postgresql"], indirect=True)
def test_db_upgrade_hides_secret_url_parameters(warehouse, warehouse_url):
    """libpq reads ?password= and ?sslpassword= from the URL: airflow-init's log shows this line."""
    url = f"{warehouse_url}?password=Qu3ryPassw0rd&sslpassword=KeyPassphrase99"
    run = run_cli("db", "upgrade", env={"AIRFLOW_CONN_BILLING_WAREHOUSE": url})
    assert run.code == 0, run.stderr
    assert "password=***&sslpassword=***" in run.stdout
    assert "Qu3ryPassw0rd" not in run.stdout + run.stderr and "KeyPassphrase99" not in run.stdout + run.stderr


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_replay_reprocesses_landings_and_refuses_a_night_without_one(warehouse, warehouse_url, tmp_path):
    """The replay after a restore (deployment.md, "Restore"): a night whose landing is missing
    would become a gap, or with LATE_OBSERVATION=allow today's VSA as that night, and its month's
    invoice would be posted again with other lines than were sent. ``--replay`` refuses it."""
    from vsa_simulator.generated import GeneratedScenario
    from vsa_simulator.testing import run_simulator

    start = date(2024, 2, 1)
    world = GeneratedScenario(seed=7, orgs=2, agents=100, start=date(2024, 1, 1), daily_churn=0.05)
    raw = tmp_path / "raw"
    env = {"AIRFLOW_CONN_BILLING_WAREHOUSE": warehouse_url, "AGENT_BILLING_RAW_PATH": str(raw),
           "AGENT_BILLING_LATE_OBSERVATION": "allow", "AIRFLOW_CONN_SMTP_DEFAULT": None}
    with run_simulator(world, date=start) as vsa:
        env["AIRFLOW_CONN_VSA_DEFAULT"] = vsa.connection_json()
        assert run_cli("sync", "--date", str(start), env=env).code == 0
        calls = vsa.count()
        again = run_cli("sync", "--replay", "--date", str(start), env=env)
        assert again.code == 0 and '"reused"' in again.stdout, again.stderr
        missing = start + timedelta(days=1)
        refused = run_cli("sync", "--replay", "--bill", "--date", str(missing), env=env)
        assert vsa.count() == calls  # VSA never called
    assert refused.code == 2 and refused.stdout == ""
    assert refused.stderr_lines == [
        f"agent-billing sync: error: --replay: snapshot {missing} has no landing at {raw / str(missing)}: restore "
        "that folder from the backup of the raw folder (is the raw volume mounted? AGENT_BILLING_RAW_PATH); if "
        "the night was a gap in the lost warehouse too, run it once without --replay; nothing was done"]
    with warehouse.connect() as conn:
        assert [str(d)[:10] for d in conn.execute(text("SELECT snapshot_date FROM sync_runs")).scalars()] == [str(start)]


def test_a_night_vsa_failed_says_how_and_by_when_to_run_it_again(warehouse, warehouse_url, tmp_path):
    """A failed extract leaves no landing: once the grace window is over, a re-run records a gap.
    The error line says so, with the moment in the billing timezone."""
    today = datetime.now(UTC).date()
    nobody = '{"conn_type": "http", "host": "http://127.0.0.1:9", "login": "u", "password": "p", ' \
             '"extra": {"max_retries": 0, "retry_deadline": 1, "timeout": 0.5}}'
    env = {"AIRFLOW_CONN_BILLING_WAREHOUSE": warehouse_url, "AGENT_BILLING_RAW_PATH": str(tmp_path / "raw"),
           "AGENT_BILLING_LATE_OBSERVATION": "refuse", "AGENT_BILLING_TIMEZONE": "UTC",
           "AIRFLOW_CONN_SMTP_DEFAULT": None, "AIRFLOW_CONN_VSA_DEFAULT": nobody,
           "AGENT_BILLING_DATA_TEAM_EMAILS": "data@msp.example"}
    failed = run_cli("sync", "--date", str(today), env=env)
    assert failed.code == 1 and failed.stdout == ""
    [line] = [x for x in failed.stderr_lines if ": error: " in x]
    late = today + timedelta(days=1)
    assert line.endswith(
        f"; snapshot {today} is failed; re-run it once VSA answers (agent-billing sync --date {today}) before "
        f"{late} 12:00 UTC: later, with no landing, the night becomes a gap"), line
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT status FROM sync_runs")).scalar() == "failed"
        body = conn.execute(text("SELECT body FROM notification_outbox WHERE kind = 'failure'")).scalar()
    # the alert of a command-line run names the command, not a task to clear
    assert (f"run the night again: `agent-billing sync --date {today}` before {late} 12:00 UTC: later, with no "
            "landing, the night becomes a gap.") in body
