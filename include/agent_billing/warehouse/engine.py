"""Create the SQLAlchemy engine of the warehouse from ``billing_warehouse`` or a URL."""

from __future__ import annotations

import os
import sqlite3
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote, unquote, urlencode, urlsplit

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from agent_billing.connections import ConnectionInfo, env_var_name, get_connection
from agent_billing.errors import ConfigurationError

WAREHOUSE_CONN_ID = "billing_warehouse"
EXPECTED_URL = "sqlite:///PATH or postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
#: The drivers the warehouse works with, per backend (SQLAlchemy's default first).
DRIVERS = {"sqlite": ("pysqlite",), "postgresql": ("psycopg",)}
POSTGRES_TYPES = ("", "postgres", "postgresql")  # "": a JSON connection without conn_type
#: Seconds a PostgreSQL connection may take to open, unless the URL's ``connect_timeout`` or
#: libpq's ``PGCONNECT_TIMEOUT`` says otherwise. libpq waits for ever by default: a warehouse
#: host that drops packets held a task for the system's TCP timeout (about 2 minutes), and its
#: failure callback too, which could be killed before it mailed the alert.
CONNECT_TIMEOUT_S = 10

# sqlite3 cannot bind Decimal; its text form keeps every digit (SQLite's NUMERIC affinity then
# stores it as REAL, exact for money of up to 15 significant digits; see docs/data-dictionary.md).
sqlite3.register_adapter(Decimal, str)


def url_from_connection(conn: ConnectionInfo) -> str:
    """SQLAlchemy URL for a ``billing_warehouse`` connection (SQLite or PostgreSQL)."""
    if conn.uri and "://" in conn.uri:
        raw = conn.uri
    elif conn.conn_type == "sqlite":
        raw = f"sqlite:///{conn.host or conn.schema}"
    elif conn.uri is not None or conn.conn_type.split("+")[0] not in POSTGRES_TYPES:
        raise ConfigurationError(
            f"{env_var_name(conn.conn_id)} is not a warehouse URL: expected {EXPECTED_URL} "
            f"(or the JSON form with conn_type sqlite or postgres)"
        )
    else:
        auth = conn.login or ""
        if conn.password:
            auth += ":" + quote(conn.password, safe="")
        host = conn.host + (f":{conn.port}" if conn.port else "")
        # Connection extras (sslmode, connect_timeout, ...) are libpq URL parameters.
        params = {k: v for k, v in conn.extra.items() if isinstance(v, str | int)}
        if conn.host.startswith("/"):  # a Unix socket's directory is libpq's host parameter
            host, params = "", {"host": conn.host, **({"port": conn.port} if conn.port else {}), **params}
        query = urlencode(params)
        raw = f"postgresql://{auth + '@' if auth else ''}{host}/{conn.schema}" + (f"?{query}" if query else "")
    return normalise_url(raw)


def normalise_url(raw: str) -> str:
    """Map Airflow-style schemes to SQLAlchemy drivers (psycopg 3 for PostgreSQL)."""
    for prefix in ("postgresql://", "postgres://"):
        if raw.startswith(prefix):
            return "postgresql+psycopg://" + raw[len(prefix):]
    return raw


def warehouse_url() -> str:
    return url_from_connection(get_connection(WAREHOUSE_CONN_ID))


SQLITE_CACHE_KIB = 32 * 1024


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA journal_mode=WAL")
    # SQLite's default page cache is 2 MB: after a year the unit-change indexes are larger, and
    # a night's few hundred changes re-read their index pages from the OS at every transaction.
    # An upper bound, taken only as pages are read.
    cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cur.close()


def _postgres_session(dbapi_conn, _record) -> None:
    """Every session in UTC, whatever the server's or the role's TimeZone: times read back are
    the instants VSA sent, and VSA's year-1 "never" (``0001-01-01T00:00:00Z``) falls before
    year 1 in any zone west of Greenwich, which no Python datetime holds (every read failed)."""
    with dbapi_conn.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")
    dbapi_conn.commit()  # kept when the pool rolls back on return


def connect_warehouse(url: str | None = None, **kwargs) -> Engine:
    """Engine for the warehouse; ``url`` defaults to the ``billing_warehouse`` connection.

    A URL that cannot work (not SQLite or PostgreSQL, unparsable, a SQLite file in a missing
    directory) is a :class:`ConfigurationError` naming the setting, never echoing a password.
    """
    source = "the warehouse URL" if url else env_var_name(WAREHOUSE_CONN_ID)
    url = normalise_url(url) if url else warehouse_url()
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigurationError(f"{source} is not a warehouse URL: expected {EXPECTED_URL}") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigurationError(
            f"{source} names a {backend!r} database ({safe_url(parsed)}): "
            f"the warehouse is SQLite or PostgreSQL, expected {EXPECTED_URL}"
        )
    if parsed.get_driver_name() not in DRIVERS[backend]:  # the bulk paths use psycopg 3's COPY
        raise ConfigurationError(
            f"{source} names the driver {parsed.get_driver_name()!r} ({safe_url(parsed)}): the warehouse "
            f"takes {backend}:// or {backend}+{DRIVERS[backend][0]}://, expected {EXPECTED_URL}"
        )
    if backend == "sqlite":
        _require_sqlite_file(parsed, source)
    elif not parsed.database and not {"dbname", "service"} & set(parsed.query):
        # libpq would take PGDATABASE or the user's name: a database nobody named
        raise ConfigurationError(
            f"{source} names no database ({safe_url(parsed)}): add it to the URL, "
            "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE (in the JSON form: schema)"
        )
    else:
        kwargs["connect_args"] = {**default_connect_args(parsed), **kwargs.get("connect_args", {})}
    try:
        engine = create_engine(parsed, future=True, **kwargs)
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise ConfigurationError(f"{source} ({safe_url(parsed)}) cannot be used: {exc}") from None
    event.listen(engine, "connect", _sqlite_pragmas if backend == "sqlite" else _postgres_session)
    return engine


def default_connect_args(url: URL) -> dict:
    """What every PostgreSQL connection to the warehouse is opened with, unless its URL says
    otherwise: ``CONNECT_TIMEOUT_S`` (unless the URL's ``connect_timeout`` or libpq's
    ``PGCONNECT_TIMEOUT`` sets one). The engine's and Great Expectations' own connections."""
    if "connect_timeout" in url.query or os.environ.get("PGCONNECT_TIMEOUT"):
        return {}
    return {"connect_timeout": CONNECT_TIMEOUT_S}


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL (``sqlite:////srv/w.db``, or a URI ``sqlite:///file:/srv/w.db?uri=true``),
    or None for an in-memory database."""
    database = url.database or ""
    if url.get_backend_name() != "sqlite":
        return None
    if url.query.get("uri"):
        if url.query.get("mode") == "memory":
            return None
        database = unquote(urlsplit(database).path) if database.startswith("file:") else database
    return None if database in ("", ":memory:") else Path(database)


def _require_sqlite_file(url: URL, source: str) -> None:
    """A SQLite warehouse is a file named by its absolute path, in a directory that exists: an
    in-memory one is gone when the command ends (``db upgrade`` "succeeded" on it), and a
    relative one is another warehouse in each directory a command runs from."""
    path = sqlite_path(url)
    if path is None:
        raise ConfigurationError(
            f"{source} names an in-memory SQLite database, gone when the command ends: give the "
            "warehouse's file, sqlite:////ABSOLUTE/PATH.db"
        )
    if not path.is_absolute():
        raise ConfigurationError(
            f"{source} names the SQLite file {path} relative to the directory a command runs from "
            f"(now {Path.cwd()}): give its absolute path, sqlite:///{Path.cwd() / path}"
        )
    if path.exists() and not path.is_file():
        raise ConfigurationError(f"{source} names {path}, which is not a file (a directory, a device): "
                                 "give the warehouse's file")
    if not path.parent.is_dir():
        raise ConfigurationError(
            f"the directory of the SQLite warehouse {path} does not exist: "
            f"create {path.parent} or correct {source}"
        )


def safe_url(engine: Engine | URL) -> str:
    """The engine's URL with any password hidden, for logs and messages: the password and
    secret URL parameters (``?password=``, ``?sslpassword=``, which libpq reads too)."""
    from agent_billing.connections import is_secret_key

    url = engine.url if isinstance(engine, Engine) else engine
    if any(is_secret_key(k) for k in url.query):
        url = url.set(query={k: ("***" if is_secret_key(k) else v) for k, v in url.query.items()})
    return url.render_as_string(hide_password=True).replace("%2A%2A%2A", "***")
