"""Run the Alembic migrations of the warehouse (``agent-billing db upgrade``) and check that
a warehouse's schema is the one this code expects before a command touches it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, event

from agent_billing.errors import SchemaOutOfDate, UserError
from agent_billing.warehouse.engine import connect_warehouse, safe_url, sqlite_path

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
UPGRADE_HINT = "run `agent-billing db upgrade`"


def quiet_alembic() -> None:
    """Alembic logs every step at INFO ("Context impl", "Running upgrade ..."): keep that out
    of command output and task logs unless someone configured the ``alembic`` logger (as
    ``agent-billing -v`` does)."""
    logger = logging.getLogger("alembic")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)


quiet_alembic()  # before any MigrationContext: even reading the revision logs at INFO


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Create or upgrade the warehouse schema to ``revision`` (idempotent); a revision this
    code does not know is refused in one line."""
    if revision != "head" and revision not in known_revisions():
        raise UserError(
            f"unknown schema revision {revision!r}: this code knows {', '.join(sorted(known_revisions()))} "
            "(or head, the default)"
        )
    current = current_revision(engine)
    if current is not None and current not in known_revisions():  # e.g. old code after a newer release
        raise SchemaOutOfDate(
            f"the warehouse {safe_url(engine)} is at schema revision {current}, which this version of "
            f"agent-billing does not know (newest {head_revision()}): run a release that knows it, or "
            "restore the backup taken before the upgrade (docs/deployment.md, 'Restore')"
        )
    with _transactional_ddl(engine) as migrating:
        command.upgrade(alembic_config(migrating), revision)


@contextmanager
def _transactional_ddl(engine: Engine) -> Iterator[Engine]:
    """The engine to migrate with. SQLite: one of its own whose transactions hold DDL too. The
    sqlite3 driver commits before each DDL statement, so a migration interrupted half-way (Ctrl-C,
    a killed task) left its first tables behind, and every later upgrade failed on them ("table
    ... already exists"). With SQLAlchemy's recipe for the driver (no implicit transactions,
    SQLAlchemy sends BEGIN) each migration is one transaction, all or nothing, as on PostgreSQL."""
    if engine.dialect.name != "sqlite" or sqlite_path(engine.url) is None:
        yield engine
        return
    migrating = connect_warehouse(engine.url.render_as_string(hide_password=False))
    event.listen(migrating, "connect", _driver_without_transactions)
    event.listen(migrating, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
    try:
        yield migrating
    finally:
        migrating.dispose()
        engine.dispose()  # its idle connections may hold a read of the schema from before


def _driver_without_transactions(dbapi_conn, _record) -> None:
    dbapi_conn.isolation_level = None


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@cache
def head_revision() -> str:
    """The newest revision this code knows (the one ``db upgrade`` goes to)."""
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


@cache
def known_revisions() -> frozenset[str]:
    return frozenset(s.revision for s in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions())


def require_current_schema(engine: Engine, *, any_revision: bool = False) -> None:
    """Refuse (:class:`SchemaOutOfDate`, one line) a warehouse whose schema is missing, older
    than the code or from a newer version of it. Reads the Alembic revision only: one query.
    ``any_revision``: only a missing warehouse or schema is refused (the alerts of a failed run,
    also one about an older schema, go out with what is there); a SQLite file is never created."""
    where = safe_url(engine)
    path = sqlite_path(engine.url)
    if path is not None and not path.exists():
        raise SchemaOutOfDate(f"the warehouse {path} does not exist: {UPGRADE_HINT} to create it")
    revision = current_revision(engine)
    head = head_revision()
    if revision == head or (any_revision and revision is not None):
        return
    if revision is None:
        raise SchemaOutOfDate(f"the warehouse {where} has no agent-billing schema: {UPGRADE_HINT}")
    if revision in known_revisions():
        raise SchemaOutOfDate(
            f"the warehouse {where} is at schema revision {revision}, older than this code's "
            f"{head}: {UPGRADE_HINT}"
        )
    raise SchemaOutOfDate(
        f"the warehouse {where} is at schema revision {revision}, which this version of "
        f"agent-billing does not know (newest {head}): upgrade agent-billing"
    )
