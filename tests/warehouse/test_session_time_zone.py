"""The warehouse reads times in UTC on a PostgreSQL server set to any zone: a US server's
default zone made every read of VSA's year-1 "never" fail (before year 1 west of Greenwich)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.engine import make_url

from agent_billing.warehouse import connect_warehouse


def test_times_read_back_in_utc_whatever_the_servers_zone(pg_warehouse_url, pg_admin):
    database = make_url(pg_warehouse_url).database
    with pg_admin.connect() as conn:
        conn.execute(text(f"""ALTER DATABASE "{database}" SET TimeZone TO 'America/New_York'"""))
    engine = connect_warehouse(pg_warehouse_url)
    try:
        for _ in range(2):  # a new session, then the pool's after its rollback
            with engine.connect() as conn:
                never = conn.execute(text("SELECT CAST('0001-01-01T00:00:00Z' AS TIMESTAMPTZ)")).scalar_one()
                seen = conn.execute(text("SELECT CAST('2025-05-14T08:39:55Z' AS TIMESTAMPTZ)")).scalar_one()
                conn.rollback()
            assert never == datetime(1, 1, 1, tzinfo=UTC)
            assert (seen, seen.utcoffset()) == (datetime(2025, 5, 14, 8, 39, 55, tzinfo=UTC), UTC.utcoffset(None))
    finally:
        engine.dispose()
