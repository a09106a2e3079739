"""Bulk row loading: COPY on PostgreSQL, batched executemany elsewhere (SQLite)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice
from typing import Any

from sqlalchemy import Connection, text

BATCH = 20_000


def bulk_insert(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Insert ``rows`` (tuples in ``columns`` order) inside the caller's transaction."""
    if conn.dialect.name == "postgresql":
        return _copy(conn, table, columns, rows)
    statement = text(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"
    )
    total = 0
    iterator = iter(rows)
    while batch := list(islice(iterator, BATCH)):
        conn.execute(statement, [dict(zip(columns, row, strict=True)) for row in batch])
        total += len(batch)
    return total


def _copy(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    raw = conn.connection.driver_connection  # the psycopg connection of this transaction
    total = 0
    with raw.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            total += 1
    return total


BULK_SETTINGS = {"jit": "off", "work_mem": "128MB", "enable_mergejoin": "off"}


def tune_for_bulk(conn: Connection) -> None:
    """Settings for the rest of this transaction (PostgreSQL) whose statements are each one
    pass over a night's rows: no JIT (their estimated cost crosses ``jit_above_cost``, and
    compiling them took longer, about 1 s, than running them), room to hash a night in memory
    (the default 4 MB spilled it to disk), and no merge joins: one sorted the night's million
    agents by org (text, in the database's collation) to join them to the services, 3.5 s
    where a hash join takes 1.5 s."""
    if conn.dialect.name == "postgresql":
        for name, value in BULK_SETTINGS.items():
            conn.execute(text(f"SET LOCAL {name} = '{value}'"))


def bulk_connect_options() -> str:
    """The same settings for every transaction of a connection (libpq's ``options``): for the
    connections Great Expectations opens for the quality gate, which reads the night's rows the
    same way (measured at 1M agents: its three biggest queries 3.4 s → 2.9 s)."""
    return " ".join(f"-c {name}={value}" for name, value in BULK_SETTINGS.items())
