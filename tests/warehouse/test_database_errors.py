"""Which real database errors count as passing trouble (a billing run Airflow retries) and
which fail the same way every time (a run that fails at once)."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import text

from agent_billing.warehouse.errors import transient_database_error


def raised(engine, sql: str) -> BaseException:
    with pytest.raises(Exception) as caught, engine.connect() as conn:
        conn.execute(text(sql))
    return caught.value


def test_a_missing_table_fails_the_same_way_every_time(warehouse):
    assert not transient_database_error(raised(warehouse, "SELECT * FROM no_such_table"))
    assert not transient_database_error(raised(warehouse, "SELEKT 1"))
    assert not transient_database_error(ValueError("not a database error"))


def test_a_database_held_by_another_writer_is_passing_trouble(warehouse):
    """SQLite: locked past the busy timeout; PostgreSQL: a lock not available in time."""
    with warehouse.connect() as holder:
        if warehouse.dialect.name == "sqlite":
            holder.exec_driver_sql("BEGIN EXCLUSIVE")
            path = warehouse.url.database
            with pytest.raises(sqlite3.OperationalError) as caught:
                sqlite3.connect(path, timeout=0.05).execute("BEGIN IMMEDIATE")  # a second writer
            error: BaseException = caught.value
        else:
            holder.execute(text("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE"))
            error = raised(warehouse, "SET lock_timeout = '50ms'; SELECT * FROM accounts")
        holder.rollback()
    assert transient_database_error(error), error
