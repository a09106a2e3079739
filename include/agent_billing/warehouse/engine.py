"""Create the SQLAlchemy engine of the warehouse from ``billing_warehouse`` or a URL."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from urllib.parse import quote, urlencode

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from agent_billing.connections import ConnectionInfo, get_connection

WAREHOUSE_CONN_ID = "billing_warehouse"

# sqlite3 cannot bind Decimal; its text form keeps every digit (SQLite's NUMERIC affinity then
# stores it as REAL, exact for money of up to 15 significant digits; see docs/data-dictionary.md).
sqlite3.register_adapter(Decimal, str)


def url_from_connection(conn: ConnectionInfo) -> str:
    """SQLAlchemy URL for a ``billing_warehouse`` connection (SQLite or PostgreSQL)."""
    if conn.uri and "://" in conn.uri:
        raw = conn.uri
    elif conn.conn_type == "sqlite":
        raw = f"sqlite:///{conn.host or conn.schema}"
    else:
        auth = conn.login or ""
        if conn.password:
            auth += ":" + quote(conn.password, safe="")
        host = conn.host + (f":{conn.port}" if conn.port else "")
        # Connection extras (sslmode, connect_timeout, ...) are libpq URL parameters.
        query = urlencode({k: v for k, v in conn.extra.items() if isinstance(v, str | int)})
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


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.close()


def connect_warehouse(url: str | None = None, **kwargs) -> Engine:
    """Engine for the warehouse; ``url`` defaults to the ``billing_warehouse`` connection."""
    url = normalise_url(url) if url else warehouse_url()
    parsed = make_url(url)
    engine = create_engine(url, future=True, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def safe_url(engine: Engine) -> str:
    """The engine URL with any password hidden, for logs and messages."""
    return engine.url.render_as_string(hide_password=True)
