"""Shared fixtures: real SQLite and PostgreSQL warehouses, an isolated Airflow home.

PostgreSQL comes from ``AGENT_BILLING_TEST_PG_URL`` (default: the local server, trust auth).
Each test gets a fresh database cloned from a migrated template (PostgreSQL: ``CREATE DATABASE …
TEMPLATE``; SQLite: a copy of a template file), migrated once per session. When PostgreSQL cannot be
reached the tests that need it are skipped, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from agent_billing.settings import forget_deployment_settings

ROOT = Path(__file__).resolve().parents[1]

# Nothing of the shell's deployment reaches the tests: an operator's shell may export the
# production metadata database (AIRFLOW__DATABASE__SQL_ALCHEMY_CONN), connections and settings,
# which the tests would otherwise migrate, write runs into and mail through. Only the tests' own
# variables (AGENT_BILLING_TEST_*, AGENT_BILLING_BENCH_*) are kept.
forget_deployment_settings(os.environ, keep=("AGENT_BILLING_TEST_", "AGENT_BILLING_BENCH_"))

# Airflow reads these at import time: set them before anything imports airflow.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="agent_billing_af_")
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)  # nothing left in /tmp by a test run
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME}/airflow.db"
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "False"  # asset events queue runs
os.environ["GX_ANALYTICS_ENABLED"] = "False"

PG_URL = os.environ.get(
    "AGENT_BILLING_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/agent_billing_test"
)
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(autouse=True)
def _own_raw_folder(tmp_path_factory, monkeypatch):
    """Each test's own empty raw folder (``AGENT_BILLING_RAW_PATH``): the default, ./data/raw,
    depends on where pytest runs, and ``contracts apply`` reads it to tell which synced nights a
    re-run can count (a missing folder means it cannot tell). A test that lands sets its own."""
    monkeypatch.setenv("AGENT_BILLING_RAW_PATH", str(tmp_path_factory.mktemp("raw")))  # beside tmp_path, not in it


def _pg_admin_engine():
    from sqlalchemy.engine import make_url

    from agent_billing.warehouse import connect_warehouse

    url = make_url(connect_warehouse_url(PG_URL)).set(database="postgres")
    return connect_warehouse(url.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")


def connect_warehouse_url(raw: str) -> str:
    from agent_billing.warehouse.engine import normalise_url

    return normalise_url(raw)


@pytest.fixture(scope="session")
def pg_template():
    """Name of a migrated template database on the test server (created once per session)."""
    from sqlalchemy import text

    try:
        admin = _pg_admin_engine()
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any connection failure means "no PostgreSQL"
        if IN_CI:
            pytest.fail(f"PostgreSQL is required under CI=true but unreachable at {PG_URL}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")
    from agent_billing.warehouse import connect_warehouse, upgrade

    name = f"ab_tpl_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = connect_warehouse(_database_url(name))
    upgrade(engine)
    engine.dispose()
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _database_url(name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(connect_warehouse_url(PG_URL)).set(database=name).render_as_string(
        hide_password=False
    )


@pytest.fixture(scope="session")
def pg_admin(pg_template):
    """An AUTOCOMMIT engine on the test server's ``postgres`` database (thread-safe)."""
    admin = _pg_admin_engine()
    yield admin
    admin.dispose()


@pytest.fixture(scope="session")
def drop_pg_database(pg_admin):
    """Drop a test database in the background, off the next test's path; all are dropped (and
    any failure reported) before the session ends."""
    from sqlalchemy import text

    def drop(name: str) -> None:
        with pg_admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    pending = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield lambda name: pending.append(pool.submit(drop, name))
    for dropped in pending:
        dropped.result()


def clone_pg_template(pg_admin, pg_template: str) -> tuple[str, str]:
    """A fresh, migrated PostgreSQL database (a clone of the template): its name and URL."""
    from sqlalchemy import text

    name = f"ab_t_{uuid.uuid4().hex[:12]}"
    with pg_admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    return name, _database_url(name)


def copy_sqlite_template(sqlite_template: Path, path: Path) -> str:
    """URL of a fresh, migrated SQLite warehouse at ``path`` (a copy of the template)."""
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def pg_warehouse_url(pg_template, pg_admin, drop_pg_database):
    """URL of a fresh, migrated PostgreSQL database for one test (a clone of the template)."""
    name, url = clone_pg_template(pg_admin, pg_template)
    yield url
    drop_pg_database(name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A migrated SQLite warehouse file (migrated once per session; tests get copies)."""
    from sqlalchemy import text

    from agent_billing.warehouse import connect_warehouse, upgrade

    path = tmp_path_factory.mktemp("sqlite_template") / "template.db"
    engine = connect_warehouse(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as conn:  # everything in the main file, so a plain copy is complete
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    engine.dispose()
    return path


@pytest.fixture
def sqlite_warehouse_url(sqlite_template, tmp_path):
    """URL of a fresh, migrated SQLite warehouse file for one test (a copy of the template)."""
    return copy_sqlite_template(sqlite_template, tmp_path / "warehouse.db")


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request):
    """Run the test on both engines: the embedded default and production."""
    name = "sqlite_warehouse_url" if request.param == "sqlite" else "pg_warehouse_url"
    return request.getfixturevalue(name)


@pytest.fixture
def second_warehouse(request, warehouse_url, tmp_path):
    """An engine on another fresh warehouse of the same engine as ``warehouse``: to compare
    two orders of the same work."""
    from agent_billing.warehouse import connect_warehouse

    name = None
    if warehouse_url.startswith("sqlite"):
        url = copy_sqlite_template(request.getfixturevalue("sqlite_template"), tmp_path / "second.db")
    else:
        name, url = clone_pg_template(request.getfixturevalue("pg_admin"), request.getfixturevalue("pg_template"))
    engine = connect_warehouse(url)
    yield engine
    engine.dispose()
    if name is not None:
        request.getfixturevalue("drop_pg_database")(name)


@pytest.fixture
def warehouse(warehouse_url, monkeypatch):
    """An engine on a fresh warehouse, also exported as ``AIRFLOW_CONN_BILLING_WAREHOUSE``."""
    from agent_billing.warehouse import connect_warehouse

    monkeypatch.setenv("AIRFLOW_CONN_BILLING_WAREHOUSE", warehouse_url)
    engine = connect_warehouse(warehouse_url)
    yield engine
    engine.dispose()


class LocalSmtp:
    """A real local SMTP server (aiosmtpd) on a free port, and what it received."""

    def __init__(self) -> None:
        import socket

        from aiosmtpd.controller import Controller

        self.messages: list = []
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(envelope)
        return "250 OK"

    def start(self) -> LocalSmtp:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def subjects(self) -> list[str]:
        from email import message_from_bytes, policy

        return [str(message_from_bytes(m.content, policy=policy.default)["Subject"]).strip() for m in self.messages]

    @property
    def extra(self) -> dict[str, str]:
        return {"disable_ssl": "true", "disable_tls": "true", "from_email": "billing@msp.example"}

    @property
    def connection(self):
        """As ``agent_billing.connections.ConnectionInfo`` (``smtp_default``)."""
        from agent_billing.connections import ConnectionInfo

        return ConnectionInfo(conn_id="smtp_default", conn_type="smtp", host="127.0.0.1",
                              port=self.port, extra=self.extra)

    @property
    def connection_json(self) -> str:
        """As an ``AIRFLOW_CONN_SMTP_DEFAULT`` value (JSON form)."""
        import json

        return json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": self.port, "extra": self.extra})


class RefusingSmtp(LocalSmtp):
    """A real local SMTP server that refuses some recipients (``refused``) and takes the others."""

    refused: frozenset[str] = frozenset()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 - aiosmtpd's hook
        if address in self.refused:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"


class AuthSmtp(LocalSmtp):
    """A real local SMTP server that requires a login and takes only ``user`` with ``password``;
    ``logins`` counts every attempt (servers lock an account after a few failed ones)."""

    user, password = "mailer", "Right-Smtp-PW"
    busy = False  # answers every login with 454 (a passing trouble) while set

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        super().__init__()
        self.logins = 0
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, authenticator=self._check,
                                      auth_required=True, auth_require_tls=False)

    def _check(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.logins += 1
        if self.busy:
            return AuthResult(success=False, handled=False, message="454 4.7.0 Temporary authentication failure")
        given = (auth_data.login, auth_data.password) if isinstance(auth_data, LoginPassword) else None
        return AuthResult(success=given == (self.user.encode(), self.password.encode()), handled=False)

    def connection_with(self, password: str):
        """As ``smtp_default`` with this server's user and ``password``."""
        from agent_billing.connections import ConnectionInfo

        return ConnectionInfo(conn_id="smtp_default", conn_type="smtp", host="127.0.0.1", port=self.port,
                              login=self.user, password=password, extra=self.extra)


@pytest.fixture
def local_smtp():
    smtp = LocalSmtp().start()
    yield smtp
    smtp.stop()
