"""The night's staging tables, one date at a time: on PostgreSQL a partition per snapshot date.

``vsa_agents``, ``vsa_view_members`` and ``service_agents`` hold each night's full snapshot
(1M agents: about 3.3M rows) for the retention period. On PostgreSQL they are partitioned by
``snapshot_date`` (migration 0011): a night is written into its own partition, every read of
one date touches that partition only, and the retention drops the partitions that leave it
(``DROP TABLE``) instead of deleting millions of rows a night and leaving them to vacuum. A
re-run of a date deletes its partition's rows (readers of the date keep their snapshot). A partition is created empty and then attached, which
takes a lock that readers of other dates do not wait for (``CREATE TABLE ... PARTITION OF``
would lock the whole table). SQLite, whose warehouses are small, keeps plain tables: the same
calls delete rows there.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Connection, text

from agent_billing.warehouse.values import as_date

# Staging table → whether its partitions are UNLOGGED (service_agents is written and merged in
# one transaction; a crash that empties it loses nothing that the history does not hold).
STAGING_TABLES = {"vsa_agents": False, "vsa_view_members": False, "service_agents": True}


def partition_name(table: str, day: date) -> str:
    return f"{table}_{day:%Y%m%d}"


def empty_date(conn: Connection, table: str, day: date) -> str:
    """Make the date's rows of a staging table empty and ready to be written, inside the
    caller's transaction; returns the table to write and analyze (the partition on PostgreSQL)."""
    if conn.dialect.name != "postgresql":
        conn.execute(text(f"DELETE FROM {table} WHERE snapshot_date = :d"), {"d": day})
        return table
    name = partition_name(table, day)
    if conn.execute(text("SELECT to_regclass(:name)"), {"name": name}).scalar() is not None:
        # A re-run: DELETE, not TRUNCATE. Another run of the same date may still be reading the
        # partition (its quality gate): TRUNCATE would wait for that reader while holding the
        # date's other partitions, which the reader needs next (a deadlock), and it is not MVCC-safe.
        conn.execute(text(f"DELETE FROM {name}"))
        return name
    unlogged = "UNLOGGED " if STAGING_TABLES[table] else ""
    conn.execute(text(f"CREATE {unlogged}TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
    # The date is a literal: a partition bound takes no parameter (``day`` is a date, not text).
    conn.execute(text(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES IN ('{day.isoformat()}')"))
    return name


def drop_dates(conn: Connection, table: str, days: set[date]) -> int:
    """Drop the staging of ``days`` (those it holds); returns dates dropped."""
    if not days:
        return 0
    if conn.dialect.name != "postgresql":
        # Only the dates still staged: after a year most settled dates are long gone.
        staged = conn.execute(
            text(f"SELECT DISTINCT snapshot_date FROM {table} WHERE snapshot_date <= :last"), {"last": max(days)}
        ).scalars()
        dropped = sorted({as_date(d) for d in staged} & days)
        for day in dropped:
            conn.execute(text(f"DELETE FROM {table} WHERE snapshot_date = :d"), {"d": day})
        return len(dropped)
    dropped = 0
    for name in partitions(conn, table):
        if datetime.strptime(name.rsplit("_", 1)[1], "%Y%m%d").date() in days:
            # IF EXISTS: the run of another night may be dropping the same partitions
            conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
            dropped += 1
    return dropped


def partitions(conn: Connection, table: str) -> list[str]:
    """The date partitions of a staging table on PostgreSQL, oldest first."""
    rows = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = CAST(:table AS regclass) ORDER BY c.relname"
        ),
        {"table": table},
    )
    return [name for (name,) in rows]
