"""One setting per system: AIRFLOW_CONN_* in URI or JSON form, read the same way as Airflow."""

from __future__ import annotations

import pytest

from agent_billing.connections import ConnectionNotFound, get_connection, parse_connection
from agent_billing.warehouse.engine import url_from_connection


def test_uri_and_json_forms_agree():
    uri = parse_connection("vsa_default", "http://billing.integrator:p%40t@127.0.0.1:8765/?page_size=50&verify_ssl=false")
    js = parse_connection(
        "vsa_default",
        '{"conn_type": "http", "host": "127.0.0.1", "port": 8765, "login": "billing.integrator",'
        ' "password": "p@t", "extra": {"page_size": "50", "verify_ssl": "false"}}',
    )
    for c in (uri, js):
        assert (c.conn_type, c.host, c.port, c.login, c.password) == ("http", "127.0.0.1", 8765, "billing.integrator", "p@t")
        assert c.extra == {"page_size": "50", "verify_ssl": "false"}
    assert "p@t" not in repr(uri)  # secrets never in reprs (and so never in logs)


@pytest.mark.parametrize(
    ("raw", "url"),
    [
        ("sqlite:////srv/billing/warehouse.db", "sqlite:////srv/billing/warehouse.db"),
        ("postgresql://billing@db:5432/billing", "postgresql+psycopg://billing@db:5432/billing"),
        ('{"conn_type": "postgres", "host": "db", "port": 5432, "login": "b", "password": "s/cret",'
         ' "schema": "billing", "extra": {"sslmode": "require"}}',
         "postgresql+psycopg://b:s%2Fcret@db:5432/billing?sslmode=require"),
        ('{"conn_type": "sqlite", "host": "/srv/w.db"}', "sqlite:////srv/w.db"),
        # a Unix socket's directory as the host: libpq's host parameter (it became the database
        # name "var/run/postgresql/billing")
        ('{"conn_type": "postgres", "host": "/var/run/postgresql", "port": 5433, "login": "b", "schema": "billing"}',
         "postgresql+psycopg://b@/billing?host=%2Fvar%2Frun%2Fpostgresql&port=5433"),
    ],
)
def test_warehouse_urls(raw, url):
    assert url_from_connection(parse_connection("billing_warehouse", raw)) == url


def test_a_warehouse_reached_through_its_unix_socket(pg_warehouse_url):
    """The JSON form with the socket's directory as the host reaches the server (when this
    machine's server listens on the usual socket), as the URL forms libpq documents do."""
    import json
    import os

    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from agent_billing.warehouse import connect_warehouse

    if not os.path.exists("/var/run/postgresql/.s.PGSQL.5432") or make_url(pg_warehouse_url).port not in (None, 5432):
        pytest.skip("no PostgreSQL socket in /var/run/postgresql for the test server")
    target = make_url(pg_warehouse_url)
    raw = json.dumps({"conn_type": "postgres", "host": "/var/run/postgresql", "login": target.username,
                      "schema": target.database})
    for url in (url_from_connection(parse_connection("billing_warehouse", raw)),
                f"postgresql://{target.username}@/?dbname={target.database}&host=/var/run/postgresql"):
        engine = connect_warehouse(url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_database()")).scalar() == target.database
        engine.dispose()


def test_missing_connection_names_the_variable(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    with pytest.raises(ConnectionNotFound, match="AIRFLOW_CONN_SMTP_DEFAULT"):
        get_connection("smtp_default")
