"""Which real database errors count as passing trouble (a billing run Airflow retries) and
which fail the same way every time (a run that fails at once)."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import text

from agent_billing.warehouse.errors import failure_text, transient_database_error


def raised(engine, sql: str) -> BaseException:
    with pytest.raises(Exception) as caught, engine.connect() as conn:
        conn.execute(text(sql))
    return caught.value


def test_a_missing_table_fails_the_same_way_every_time(warehouse):
    assert not transient_database_error(raised(warehouse, "SELECT * FROM no_such_table"))
    assert not transient_database_error(raised(warehouse, "SELEKT 1"))
    assert not transient_database_error(ValueError("not a database error"))


def test_a_database_error_is_told_in_one_line_with_what_the_server_says_of_it(warehouse):
    """What a failed night's record and the data team's alert say: the driver's line, with
    PostgreSQL's DETAIL (the key a constraint refused) and CONTEXT, never SQLAlchemy's dump of
    the statement and its parameters; an error SQLAlchemy raises binding a value (a
    StatementError, no database error) is told the same way."""
    import sqlalchemy as sa

    with warehouse.connect() as conn:
        conn.execute(text("CREATE TEMPORARY TABLE once (id INTEGER PRIMARY KEY, day DATE)"))
        conn.execute(text("INSERT INTO once (id) VALUES (1)"))
        conn.commit()  # the temporary table outlives the failed statements' rollbacks
        with pytest.raises(Exception) as duplicate:
            conn.execute(text("INSERT INTO once (id) VALUES (:id)"), {"id": 1})
        conn.rollback()
        once = sa.Table("once", sa.MetaData(), sa.Column("id", sa.Integer), sa.Column("day", sa.Date))
        with pytest.raises(sa.exc.StatementError) as unbound:  # SQLite: raised by SQLAlchemy binding it
            conn.execute(once.insert(), {"id": 2, "day": "2024-13-01"})
    assert "[SQL" in str(duplicate.value) and "[SQL" in str(unbound.value)  # what SQLAlchemy says
    told = failure_text(duplicate.value)
    if warehouse.dialect.name == "postgresql":
        assert told == ('UniqueViolation: duplicate key value violates unique constraint "once_pkey"; '
                        "Key (id)=(1) already exists.")
    else:
        assert told == "IntegrityError: UNIQUE constraint failed: once.id"
    assert failure_text(unbound.value) == (
        "TypeError: SQLite Date type only accepts Python date objects as input." if warehouse.dialect.name == "sqlite"
        else "DatetimeFieldOverflow: date/time field value out of range: \"2024-13-01\"; unnamed portal parameter "
        "$2 = '...'")
    assert failure_text(ValueError("not a database error")) == "not a database error"


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




def connect_to_a_mute_server(connect, query: str = "") -> BaseException:
    """What ``connect(url)`` raises against a server that takes the TCP connection and never
    says a word (a dropped route, a hung server); the test fails if it still waits after 60 s."""
    import socket
    import threading

    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen()  # the kernel completes the handshake; nobody ever reads or answers
        url = f"postgresql://billing@127.0.0.1:{mute.getsockname()[1]}/billing{query}"
        outcome: list[BaseException | None] = []

        def attempt() -> None:
            try:
                connect(url)
                outcome.append(None)
            except Exception as exc:  # noqa: BLE001 - the test inspects it
                outcome.append(exc)

        worker = threading.Thread(target=attempt, daemon=True)
        worker.start()
        worker.join(timeout=60)
    assert outcome, "still waiting after 60 s on a server that never answers"
    assert outcome[0] is not None
    return outcome[0]


def test_a_warehouse_that_never_answers_fails_the_connection_instead_of_holding_it(monkeypatch):
    """libpq alone waits for ever, or for the system's TCP timeout; the engine gives up after
    ``CONNECT_TIMEOUT_S`` as passing trouble, or after the URL's own ``connect_timeout``."""
    from agent_billing.warehouse import engine as warehouse_engine

    def connect(url: str) -> None:
        warehouse_engine.connect_warehouse(url).connect().close()

    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    monkeypatch.setattr(warehouse_engine, "CONNECT_TIMEOUT_S", 2)
    failed = connect_to_a_mute_server(connect)
    assert transient_database_error(failed) and "timeout" in str(failed).lower()
    monkeypatch.setattr(warehouse_engine, "CONNECT_TIMEOUT_S", 600)  # longer than the wait above
    assert "timeout" in str(connect_to_a_mute_server(connect, "?connect_timeout=2")).lower()  # the URL's own wins


def test_the_quality_gate_s_own_connections_give_up_on_a_mute_warehouse_too(monkeypatch):
    """Great Expectations opens its own connections from the warehouse's URL: they carry the
    same limit (the gate's step would otherwise hang where every other step fails)."""
    from sqlalchemy import create_engine

    from agent_billing.quality.gx_context import quiet_context, warehouse_source
    from agent_billing.warehouse import engine as warehouse_engine

    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    monkeypatch.setattr(warehouse_engine, "CONNECT_TIMEOUT_S", 2)
    failed = connect_to_a_mute_server(
        lambda url: warehouse_source(quiet_context(), "w", create_engine(url.replace("postgresql:", "postgresql+psycopg:"))))
    assert "timeout" in str(failed).lower()
