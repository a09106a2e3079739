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


def tune_for_bulk(conn: Connection) -> None:
    """Settings for the rest of this transaction (PostgreSQL) whose statements are each one
    pass over a night's rows: no JIT (their estimated cost crosses ``jit_above_cost``, and
    compiling them took longer, about 1 s, than running them), and room to sort and hash a
    night in memory (the default 4 MB spilled the snapshot's DISTINCT to disk)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL jit = off"))
        conn.execute(text("SET LOCAL work_mem = '128MB'"))


def summarize_new_ranges(conn: Connection, index: str) -> None:
    """Summarize the block ranges of a BRIN index that were written since its last summary
    (PostgreSQL). The staging tables' BRIN on ``snapshot_date`` only narrows a date's reads to
    ranges it has summarized; until autovacuum gets to them, the night just written, and any
    night before it not yet vacuumed, would be read by every query of any date."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT brin_summarize_new_values(CAST(:index AS regclass))"), {"index": index})
