"""The bad-input matrix: each mistake a user can make, through the real command line.

Every case asserts the exit code (0 ok, 1 failure, 2 bad input or usage), exactly one line
on stderr that names what to fix, no traceback, nothing on stdout, and a warehouse whose
every table (the Alembic revision included) is the same before and after. A case runs on
each engine it lists. To add a mistake, add a row to CASES.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import make_url
from tests.conftest import PG_URL

from agent_billing.warehouse import connect_warehouse
from agent_billing.warehouse.migrate import alembic_config

from .conftest import run_cli, warehouse_contents

BOTH = ("sqlite", "postgresql")
SQLITE = ("sqlite",)  # the mistake does not involve the warehouse: one engine is enough
WAREHOUSE_VAR = "AIRFLOW_CONN_BILLING_WAREHOUSE"
SECRET = "s3cret-Pa55"


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    exit_code: int
    message: str  # a regex the single stderr line must match (after "agent-billing CMD: error: ")
    engines: tuple[str, ...] = BOTH
    env: dict[str, str | None] = field(default_factory=dict)  # "{tmp}" and "{warehouse}" expand
    setup: Callable[[str, Path], None] | None = None  # (warehouse URL, tmp_path), before the "before"
    check: Callable[[Path], None] | None = None  # extra assertions afterwards


def _downgrade_to(revision: str) -> Callable[[str, Path], None]:
    def setup(url: str, _tmp: Path) -> None:
        engine = connect_warehouse(url)
        try:
            command.downgrade(alembic_config(engine), revision)
        finally:
            engine.dispose()

    return setup


def _newer_schema(url: str, _tmp: Path) -> None:
    """The warehouse as a newer release left it (old code checked out without restoring)."""
    engine = connect_warehouse(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    finally:
        engine.dispose()


def _non_empty_home(_url: str, tmp: Path) -> None:
    (tmp / "home").mkdir()
    (tmp / "home" / "notes.txt").write_text("not the demo's\n")


def _home_kept(tmp: Path) -> None:
    assert (tmp / "home" / "notes.txt").read_text() == "not the demo's\n"
    assert sorted(p.name for p in (tmp / "home").iterdir()) == ["notes.txt"]


def _huge_price_file(_url: str, tmp: Path) -> None:
    (tmp / "huge.yaml").write_text(
        "accounts:\n- account_id: HUGE\n  name: Huge Ltd\n  contracts:\n  - contract_id: C-HUGE\n"
        "    currency: USD\n    start_date: 2025-01-01\n    services:\n    - service_id: S-HUGE\n"
        "      name: Huge\n      unit_price: '100000000000000'\n      units_source: manual\n"
        "      units: 1\n      start_date: 2025-01-01\n"
    )


def _text_file(_url: str, tmp: Path) -> None:
    (tmp / "not-a-db.txt").write_text("minutes of the meeting\n" * 200)


def _nothing_created(tmp: Path) -> None:
    assert not (tmp / "missing.db").exists()


def _vsa_connection(host: str, **extra: object) -> dict[str, str]:
    """``vsa_default`` in JSON form, with ``host`` and connection extras."""
    import json

    return {"AIRFLOW_CONN_VSA_DEFAULT": json.dumps(
        {"conn_type": "http", "host": host, "login": "u", "password": "p", **({"extra": extra} if extra else {})})}


def _nothing_created_here(_tmp: Path) -> None:
    assert not Path("relative-w.db").exists()


def _huge_units_file(_url: str, tmp: Path) -> None:
    (tmp / "huge.yaml").write_text(
        "accounts:\n- account_id: HUGE\n  name: Huge Ltd\n  contracts:\n  - contract_id: C-HUGE\n"
        "    currency: USD\n    start_date: 2025-01-01\n    services:\n    - service_id: S-HUGE\n"
        "      name: Huge\n      unit_price: '1'\n      units_source: manual\n"
        "      units: 100000000000000000000\n      start_date: 2025-01-01\n"
    )


CASES = [
    # -- the warehouse setting
    Case("warehouse-url-garbage", ("review",), 2, rf"{WAREHOUSE_VAR} is not a warehouse URL",
         SQLITE, env={WAREHOUSE_VAR: "garbage"}),
    Case("warehouse-url-bad-json", ("review",), 2, rf"{WAREHOUSE_VAR} is not valid JSON",
         SQLITE, env={WAREHOUSE_VAR: '{"conn_type": "postgres",'}),
    Case("warehouse-url-other-database", ("review",), 2, r"names a 'mysql' database",
         SQLITE, env={WAREHOUSE_VAR: f"mysql://billing:{SECRET}@db/billing"}),
    Case("warehouse-not-configured", ("bill", "--as-of", "2025-01-15"), 2,
         rf"set {WAREHOUSE_VAR}", SQLITE, env={WAREHOUSE_VAR: None}),
    Case("postgresql-refuses", ("review",), 1, r"cannot use the warehouse .*127\.0\.0\.1:1/.*refused.* \(check "
         r"AIRFLOW_CONN_BILLING_WAREHOUSE and that the database is up, then run the command again: what it had not "
         r"committed was rolled back\)$",
         SQLITE, env={WAREHOUSE_VAR: f"postgresql://billing:{SECRET}@127.0.0.1:1/billing"}),
    Case("postgresql-database-missing", ("review",), 2,
         r'cannot use the warehouse .*/review_cli_no_such_db: .*database "review_cli_no_such_db" does not exist'
         r".* \(check AIRFLOW_CONN_BILLING_WAREHOUSE\)$",
         ("postgresql",), env={WAREHOUSE_VAR: make_url(PG_URL).set(database="review_cli_no_such_db")
                               .render_as_string(hide_password=False)}),
    Case("sqlite-not-a-database", ("review",), 2, r"cannot use the warehouse sqlite:///.*/not-a-db\.txt: file is not a database",
         SQLITE, env={WAREHOUSE_VAR: "sqlite:///{tmp}/not-a-db.txt"}, setup=_text_file),
    Case("sqlite-directory-missing", ("review",), 2,
         r"directory of the SQLite warehouse /nonexistent/dir/w\.db does not exist",
         SQLITE, env={WAREHOUSE_VAR: "sqlite:////nonexistent/dir/w.db"}),
    Case("sqlite-in-memory", ("db", "upgrade"), 2,
         rf"{WAREHOUSE_VAR} names an in-memory SQLite database, gone when the command ends: give the "
         r"warehouse's file, sqlite:////ABSOLUTE/PATH\.db", SQLITE, env={WAREHOUSE_VAR: "sqlite:///:memory:"}),
    Case("sqlite-uri-in-memory", ("db", "upgrade"), 2, rf"{WAREHOUSE_VAR} names an in-memory SQLite database",
         SQLITE, env={WAREHOUSE_VAR: "sqlite:///file::memory:?uri=true"}),
    Case("sqlite-relative-path", ("db", "upgrade"), 2,
         rf"names the SQLite file relative-w\.db relative to the directory a command runs from \(now "
         rf"{re.escape(str(Path.cwd()))}\): give its absolute path, sqlite:///{re.escape(str(Path.cwd()))}/relative-w\.db",
         SQLITE, env={WAREHOUSE_VAR: "sqlite:///relative-w.db"}, check=_nothing_created_here),
    Case("postgresql-json-no-schema", ("db", "upgrade"), 2,
         r"names no database \(postgresql\+psycopg://billing@db/\): add it to the URL, "
         r"postgresql://USER\[:PASSWORD\]@HOST\[:PORT\]/DATABASE \(in the JSON form: schema\)",
         SQLITE, env={WAREHOUSE_VAR: '{"conn_type": "postgres", "host": "db", "login": "billing"}'}),
    Case("sqlite-a-device", ("db", "upgrade"), 2,
         rf"{WAREHOUSE_VAR} names /dev/null, which is not a file \(a directory, a device\): give the warehouse's file",
         SQLITE, env={WAREHOUSE_VAR: "sqlite:////dev/null"}),
    Case("postgresql-no-database", ("db", "upgrade"), 2,
         r"names no database \(postgresql\+psycopg://billing:\*\*\*@127\.0\.0\.1:5432\): add it to the URL",
         SQLITE, env={WAREHOUSE_VAR: f"postgresql://billing:{SECRET}@127.0.0.1:5432"}),
    Case("group-without-subcommand", ("contracts",), 2,  # was "required: contracts_command", an internal name
         r"the following arguments are required: SUBCOMMAND \(see agent-billing contracts --help\)"),
    # -- the schema
    Case("sqlite-file-missing", ("review",), 2, r"missing\.db does not exist: run `agent-billing db upgrade`",
         SQLITE, env={WAREHOUSE_VAR: "sqlite:///{tmp}/missing.db"}, check=_nothing_created),
    Case("schema-missing", ("bill", "--as-of", "2025-01-15"), 2,
         r"has no agent-billing schema: run `agent-billing db upgrade`", setup=_downgrade_to("base")),
    Case("schema-older", ("review",), 2,
         r"schema revision 0003, older than .*: run `agent-billing db upgrade`", setup=_downgrade_to("0003")),
    Case("schema-newer", ("review",), 2,
         r"schema revision 0099, which this version of agent-billing does not know", setup=_newer_schema),
    Case("upgrade-on-a-newer-schema", ("db", "upgrade"), 2,
         r"schema revision 0099, which this version of agent-billing does not know \(newest \d+\): run a "
         r"release that knows it, or restore the backup", setup=_newer_schema),
    Case("upgrade-unknown-revision", ("db", "upgrade", "--revision", "nope"), 2,
         r"unknown schema revision 'nope': this code knows 0001, .* \(or head, the default\)"),
    # -- the VSA setting (no warehouse needed by `vsa probe`)
    Case("vsa-unreachable", ("vsa", "probe"), 1, r"cannot reach VSA: .*\(host http://127\.0\.0\.1:1,", SQLITE,
         env={"AIRFLOW_CONN_VSA_DEFAULT": '{"conn_type": "http", "host": "http://127.0.0.1:1", '
              f'"login": "integrator", "password": "{SECRET}", "extra": {{"max_retries": 0}}}}'}),
    Case("warehouse-port-not-a-number", ("review",), 2,
         rf"{WAREHOUSE_VAR} is not a valid connection: the port is not a number from 0 to 65535",
         SQLITE, env={WAREHOUSE_VAR: f"postgresql://billing:{SECRET}@db:abc/billing"}),
    Case("warehouse-password-with-a-hash", ("review",), 2,  # the URL parser takes the password for the port
         rf"{WAREHOUSE_VAR} is not a valid connection: .* must be percent-encoded",
         SQLITE, env={WAREHOUSE_VAR: f"postgresql://billing:{SECRET}#x@db:5432/billing"}),
    Case("warehouse-password-with-an-at", ("review",), 2,  # readers split it at different '@'s
         rf"{WAREHOUSE_VAR} is not a valid connection: the host part holds more than one '@' .* must be "
         "percent-encoded", SQLITE, env={WAREHOUSE_VAR: f"postgresql://billing:p@{SECRET}@127.0.0.1:5432/billing"}),
    Case("warehouse-password-normalising-to-an-at", ("review",), 2,  # urlsplit's own message quotes it
         rf"{WAREHOUSE_VAR} is not a valid connection: the host part holds a character that Unicode "
         "normalisation turns into", SQLITE, env={WAREHOUSE_VAR: f"postgresql://billing:{SECRET}\u2100x@127.0.0.1:5432/billing"}),
    Case("warehouse-password-with-a-bracket", ("review",), 2,
         rf"{WAREHOUSE_VAR} is not a valid connection: the host part holds \[ or \] outside an IPv6 address",
         SQLITE, env={WAREHOUSE_VAR: f"postgresql://billing:{SECRET}[x@127.0.0.1:5432/billing"}),
    Case("warehouse-unknown-url-parameter", ("review",), 2,
         r"invalid warehouse setting: .*bogusopt.* \(check AIRFLOW_CONN_BILLING_WAREHOUSE\)",
         SQLITE, env={WAREHOUSE_VAR: f"postgresql://billing:{SECRET}@127.0.0.1:5432/billing?bogusopt=1"}),
    Case("warehouse-unreadable-url-parameter", ("review",), 2,
         r"invalid warehouse setting: .*connect_timeout",
         SQLITE, env={WAREHOUSE_VAR: f"postgresql://billing:{SECRET}@127.0.0.1:5432/billing?connect_timeout=abc"}),
    Case("warehouse-bad-sslmode", ("review",), 2, r"cannot use the warehouse .*invalid sslmode value",
         SQLITE, env={WAREHOUSE_VAR: f"postgresql://billing:{SECRET}@127.0.0.1:5432/billing?sslmode=bogus"}),
    Case("warehouse-other-driver", ("review",), 2,
         r"names the driver 'asyncpg' .*: the warehouse takes postgresql:// or postgresql\+psycopg://",
         SQLITE, env={WAREHOUSE_VAR: f"postgresql+asyncpg://billing:{SECRET}@127.0.0.1:5432/billing"}),
    Case("warehouse-secret-url-parameters", ("review",), 1,
         r"cannot use the warehouse .*127\.0\.0\.1:1/billing\?password=\*\*\*&sslpassword=\*\*\*: ",
         SQLITE, env={WAREHOUSE_VAR: f"postgresql://billing@127.0.0.1:1/billing?password={SECRET}&sslpassword={SECRET}x"}),
    Case("warehouse-json-secret-extra", ("review",), 1, r"cannot use the warehouse .*sslpassword=\*\*\*",
         SQLITE, env={WAREHOUSE_VAR: '{"conn_type": "postgres", "host": "127.0.0.1", "port": 1, "schema": "billing", '
                      f'"password": "{SECRET}", "extra": {{"sslpassword": "{SECRET}"}}}}'}),
    Case("warehouse-json-extra-not-an-object", ("review",), 2,
         rf"{WAREHOUSE_VAR} is not a valid connection: extra must be a JSON object, not list",
         SQLITE, env={WAREHOUSE_VAR: '{"conn_type": "postgres", "host": "db", "extra": [1]}'}),
    Case("warehouse-json-port-not-a-number", ("review",), 2,
         rf"{WAREHOUSE_VAR} is not a valid connection: port 'abc' is not a whole number",
         SQLITE, env={WAREHOUSE_VAR: '{"conn_type": "postgres", "host": "db", "port": "abc"}'}),
    Case("vsa-extra-misspelt", ("vsa", "probe"), 2,  # was ignored: 8 requests in flight, not the 2 asked
         r"connection 'vsa_default': extra 'max_concurency' is not an option of the VSA client \(did you mean "
         r"max_concurrency\?\)",
         SQLITE, env=_vsa_connection("https://vsa.example.com", max_concurency=2)),
    Case("vsa-extra-milliseconds", ("vsa", "probe"), 2,
         r"connection 'vsa_default': extra timeout=30000 is out of range \(from 0\.001 to 600 seconds\)",
         SQLITE, env=_vsa_connection("https://vsa.example.com", timeout=30000)),
    Case("vsa-host-without-scheme", ("vsa", "probe"), 2,
         r"connection 'vsa_default' has no host \(the VSA base URL\): write it as a URI with its scheme, "
         r"https://user:token@vsa\.example\.com, or in JSON form",
         SQLITE, env={"AIRFLOW_CONN_VSA_DEFAULT": "vsa.example.com"}),
    # a host requests cannot use was taken for VSA failing: retried 4 times, then exit 1
    Case("vsa-host-port-out-of-range", ("vsa", "probe"), 2,
         r"VSA base URL 'https://vsa\.example\.com:99999' must look like https://vsa\.example\.com: its port "
         r"is not a number from 1 to 65535",
         SQLITE, env=_vsa_connection("https://vsa.example.com:99999")),
    Case("vsa-host-with-a-space", ("vsa", "probe"), 2,
         r"VSA base URL 'https://vsa example\.com' must look like https://vsa\.example\.com: 'vsa example\.com' "
         r"is not a host name",
         SQLITE, env=_vsa_connection("https://vsa example.com")),
    Case("vsa-host-unclosed-ipv6", ("vsa", "probe"), 2,
         r"VSA base URL 'https://\[::1' must look like https://vsa\.example\.com$",
         SQLITE, env=_vsa_connection("https://[::1")),
    Case("warehouse-json-port-out-of-range", ("review",), 2,
         rf"{WAREHOUSE_VAR} is not a valid connection: port 99999 is out of range",
         SQLITE, env={WAREHOUSE_VAR: '{"conn_type": "postgres", "host": "db", "port": 99999}'}),
    Case("vsa-not-configured", ("vsa", "probe"), 2, r"set AIRFLOW_CONN_VSA_DEFAULT", SQLITE,
         env={"AIRFLOW_CONN_VSA_DEFAULT": None, WAREHOUSE_VAR: "garbage"}),
    # -- the AGENT_BILLING_* settings: each wrong variable named with its value and the rule
    Case("settings-invalid", ("sync", "--date", "2025-01-15"), 2,
         r"invalid setting\(s\): AGENT_BILLING_TIMEZONE='Mars/Base': unknown timezone .*; "
         r"AGENT_BILLING_LATE_OBSERVATION='yes': Input should be 'refuse' or 'allow'; "
         r"AGENT_BILLING_LATE_GRACE_HOURS='36h': Input should be a valid integer",
         SQLITE, env={"AGENT_BILLING_TIMEZONE": "Mars/Base", "AGENT_BILLING_LATE_OBSERVATION": "yes",
                      "AGENT_BILLING_LATE_GRACE_HOURS": "36h"}),
    Case("settings-share-out-of-range", ("bill", "--as-of", "2025-01-15"), 2,
         r"AGENT_BILLING_QUARANTINE_SHARE='2': Input should be less than or equal to 1",
         SQLITE, env={"AGENT_BILLING_QUARANTINE_SHARE": "2"}),
    Case("settings-retention-forever", ("sync", "--date", "2025-01-15"), 2,  # "keep forever": every night failed
         r"AGENT_BILLING_SNAPSHOT_RETENTION_DAYS='999999': Input should be less than or equal to 36500",
         SQLITE, env={"AGENT_BILLING_SNAPSHOT_RETENTION_DAYS": "999999"}),
    Case("settings-data-team-semicolons", ("bill", "--as-of", "2025-01-15"), 2,
         r"AGENT_BILLING_DATA_TEAM_EMAILS='data@msp\.example;ops@msp\.example': .* is not one e-mail "
         r"address \(separate several with commas\)",
         SQLITE, env={"AGENT_BILLING_DATA_TEAM_EMAILS": "data@msp.example;ops@msp.example"}),
    # days typed as hours: VSA's present state would be stored as a night weeks old, as on time
    Case("settings-grace-beyond-a-week", ("sync", "--date", "2025-01-15"), 2,
         r"AGENT_BILLING_LATE_GRACE_HOURS='2160': Input should be less than or equal to 168",
         SQLITE, env={"AGENT_BILLING_LATE_GRACE_HOURS": "2160"}),
    # a misspelt name was ignored: the billing timezone stayed UTC, for good
    Case("settings-misspelt-name", ("sync", "--date", "2025-01-15"), 2,
         r"invalid setting\(s\): AGENT_BILLING_TIME_ZONE is no setting of agent-billing \(did you mean "
         r"AGENT_BILLING_TIMEZONE\?\); the settings are listed in README\.md",
         SQLITE, env={"AGENT_BILLING_TIME_ZONE": "Europe/Amsterdam"}),
    # read-only commands too: the timezone typed wrong would otherwise surface only at the next sync
    Case("settings-misspelt-name-review", ("review",), 2,
         r"invalid setting\(s\): AGENT_BILLING_TIME_ZONE is no setting of agent-billing \(did you mean "
         r"AGENT_BILLING_TIMEZONE\?\)",
         SQLITE, env={"AGENT_BILLING_TIME_ZONE": "UTC"}),
    Case("settings-misspelt-lowercase", ("review",), 2,
         r"AGENT_BILLING_time_zone is no setting of agent-billing \(did you mean AGENT_BILLING_TIMEZONE\?\); the "
         r"settings are listed in README\.md, 'Configuration'",
         SQLITE, env={"AGENT_BILLING_time_zone": "UTC"}),
    Case("settings-unknown-zone-invoices-list", ("invoices", "list", "--month", "2025-01"), 2,
         r"AGENT_BILLING_TIMEZONE='Europe/Amsterdm'", SQLITE, env={"AGENT_BILLING_TIMEZONE": "Europe/Amsterdm"}),
    Case("settings-empty-sender", ("bill", "--as-of", "2025-01-15"), 2,
         r"AGENT_BILLING_NOTIFY_FROM='': the sender must be one e-mail address, such as billing@msp\.example",
         SQLITE, env={"AGENT_BILLING_NOTIFY_FROM": ""}),
    Case("settings-empty-raw-path", ("sync", "--date", "2025-01-15"), 2,
         r"AGENT_BILLING_RAW_PATH='': empty: give the raw volume's path",
         SQLITE, env={"AGENT_BILLING_RAW_PATH": ""}),
    # -- arguments
    Case("usage-missing-option", ("bill",), 2, r"required: --as-of \(see agent-billing bill --help\)",
         SQLITE),
    Case("sync-impossible-date", ("sync", "--date", "2024-02-30"), 2, r"invalid --date '2024-02-30'"),
    Case("sync-future-date", ("sync", "--date", "2099-05-05"), 2,
         r"snapshot date 2099-05-05 is in the future \(today is .* in UTC\); VSA cannot report it yet",
         env={"AIRFLOW_CONN_VSA_DEFAULT": "http://integrator:token@127.0.0.1:1"}),
    Case("bill-year-one", ("bill", "--as-of", "0001-01-31"), 2,
         r"invalid --as-of 0001-01-31: expected a date from 1900-01-01 to 9998-12-31"),
    Case("sync-year-one", ("sync", "--date", "0001-01-01"), 2,
         r"invalid --date 0001-01-01: expected a date from 1900-01-01 to 9998-12-31", SQLITE),
    Case("bill-not-a-date", ("bill", "--as-of", "nope"), 2, r"invalid --as-of 'nope'"),
    Case("export-not-a-month", ("invoices", "export", "--month", "2025-13"), 2, r"invalid --month '2025-13'"),
    Case("units-unknown-service", ("units", "get", "--service", "UNKNOWN"), 2, r"service 'UNKNOWN' not found",
         env={"AIRFLOW_CONN_VSA_DEFAULT": "http://integrator:token@127.0.0.1:1"}),
    Case("release-not-quarantined", ("snapshots", "release", "2025-01-15"), 2,
         r"snapshot 2025-01-15 is complete, not quarantined"),
    Case("discard-unknown-date", ("snapshots", "discard", "2025-01-16"), 2,
         r"snapshot 2025-01-16 is unknown, not quarantined"),
    Case("reopen-not-discarded", ("snapshots", "reopen", "2025-01-15"), 2,
         r"snapshot 2025-01-15 is complete, not discarded \(no snapshot is discarded now\); nothing to reopen"),
    Case("accept-uncounted-nothing-to-accept", ("snapshots", "accept-uncounted", "2025-01-15", "--service", "S-SUPPORT"),
         2, r"service S-SUPPORT has no night 2025-01-15 to recount: it has none"),
    Case("accept-uncounted-unknown-service", ("snapshots", "accept-uncounted", "2025-01-15", "--service", "S-NONE"), 2,
         r"no service 'S-NONE' in the warehouse \(ids are case-sensitive\)"),
    # -- files
    Case("export-directory-missing", ("invoices", "export", "--month", "2025-01", "--output",
                                      "/nonexistent/dir/x.csv"), 2, r"cannot write /nonexistent/dir/x\.csv: No such file or directory"),
    Case("export-disk-full", ("invoices", "export", "--month", "2025-01", "--output", "/dev/full"), 1,
         r"cannot write /dev/full: No space left on device", SQLITE),  # the system's trouble: exit 1
    Case("export-empty-output", ("invoices", "export", "--month", "2025-01", "--output", ""), 2,
         r"--output is empty: give a file name, or - \(or nothing\) for the standard output", SQLITE),
    Case("export-to-a-directory", ("invoices", "export", "--month", "2025-01", "--output", "{tmp}"), 2,
         r"Is a directory", SQLITE),
    Case("contracts-file-missing", ("contracts", "apply", "{tmp}/contracts.yaml"), 2,
         r"contracts\.yaml: file not found"),
    Case("demo-no-orgs", ("demo", "--home", "{tmp}/demo", "--orgs", "0"), 2,
         r"argument --orgs: expected at least 1, got 0", SQLITE),
    Case("demo-home-not-empty", ("demo", "--home", "{tmp}/home", "--nights", "1"), 2,
         r"--home .*/home is not empty and was not created by the demo", SQLITE,
         setup=_non_empty_home, check=_home_kept),
    # -- values the warehouse cannot hold (SQLite stores any number)
    Case("price-overflows-numeric", ("contracts", "apply", "{tmp}/huge.yaml"), 2,
         r"unit_price|overflow|does not fit", ("postgresql",), setup=_huge_price_file),
    Case("units-overflow-integer", ("contracts", "apply", "{tmp}/huge.yaml"), 2,
         r"units|out of range|does not fit", setup=_huge_units_file),
]


@pytest.mark.parametrize(
    ("case", "warehouse_url"),
    [pytest.param(c, e, id=f"{c.id}-{e}") for c in CASES for e in c.engines],
    indirect=["warehouse_url"],
)
def test_a_mistake_is_one_line_and_changes_nothing(case: Case, seeded: str, tmp_path: Path):
    def expand(value: str) -> str:
        return value.replace("{tmp}", str(tmp_path)).replace("{warehouse}", seeded)

    if case.setup:
        case.setup(seeded, tmp_path)
    before = warehouse_contents(seeded)
    env = {WAREHOUSE_VAR: seeded, **{k: None if v is None else expand(v) for k, v in case.env.items()}}

    run = run_cli(*(expand(a) for a in case.argv), env=env)

    assert run.code == case.exit_code, run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    assert run.stdout == ""
    [line] = run.stderr_lines
    assert re.match(r"agent-billing [\w-]+( [\w-]+)?: error: ", line), line  # the command as typed
    assert re.search(case.message, line), line
    assert SECRET not in line
    assert warehouse_contents(seeded) == before
    if case.check:
        case.check(tmp_path)
