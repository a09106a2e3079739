"""The night's staging tables, one date at a time: on PostgreSQL a partition per snapshot date.

``vsa_agents`` and ``vsa_view_members`` hold each night's full snapshot (1M agents: about 1.2M
rows) for the retention period. On PostgreSQL they are partitioned by ``snapshot_date``
(migration 0011): a night is written into its own partition, every read of one date touches
that partition only, and the retention drops the partitions that leave it (``DROP TABLE``)
instead of deleting a million rows a night and leaving them to vacuum. A re-run of a date
deletes its partition's rows (readers of the date keep their snapshot). A partition is created
empty and then attached, which takes a lock that readers of other dates do not wait for
(``CREATE TABLE ... PARTITION OF`` would lock the whole table). SQLite, whose warehouses are
small, keeps plain tables: the same calls delete rows there.

``staged_dates`` (migration 0012) follows each date's staging: ``loaded`` by a load, ``settled``
once merged into the histories or discarded, ``dropped`` by the retention, which marks a date
before it drops its rows. Only settled staging may be dropped; ``loads`` tells a prune whether
a load came after it looked.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Connection, text

from agent_billing.warehouse.values import as_date

STAGING_TABLES = ("vsa_agents", "vsa_view_members")


def partition_name(table: str, day: date) -> str:
    return f"{table}_{day:%Y%m%d}"


def partition_date(name: str) -> date:
    """The date of a partition named by ``partition_name``."""
    return datetime.strptime(name[-8:], "%Y%m%d").date()


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
    conn.execute(text(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
    # The date is a literal: a partition bound takes no parameter (``day`` is a date, not text).
    conn.execute(text(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES IN ('{day.isoformat()}')"))
    return name


def drop_dates(conn: Connection, table: str, days: set[date]) -> None:
    """Drop the staging of ``days`` from one table (the dates' partitions on PostgreSQL)."""
    for day in sorted(days):
        if conn.dialect.name == "postgresql":
            # IF EXISTS: the run of another night may be dropping the same partitions
            conn.execute(text(f"DROP TABLE IF EXISTS {partition_name(table, day)}"))
        else:
            conn.execute(text(f"DELETE FROM {table} WHERE snapshot_date = :d"), {"d": day})


def mark_loaded(conn: Connection, day: date) -> None:
    """The load wrote the date's staging (in its transaction): keep it until it is settled."""
    conn.execute(
        text(
            "INSERT INTO staged_dates (snapshot_date, stage, loads) VALUES (:d, 'loaded', 1) "
            "ON CONFLICT (snapshot_date) DO UPDATE SET stage = 'loaded', loads = staged_dates.loads + 1"
        ),
        {"d": day},
    )


def mark_settled(conn: Connection, day: date) -> None:
    """The date was merged into the histories or discarded: its staging may leave with the retention."""
    conn.execute(
        text("UPDATE staged_dates SET stage = 'settled' WHERE snapshot_date = :d AND stage = 'loaded'"), {"d": day}
    )


def stage_of(conn: Connection, day: date) -> str | None:
    """``loaded``, ``settled``, ``dropped``, or None for a date never staged."""
    return conn.execute(text("SELECT stage FROM staged_dates WHERE snapshot_date = :d"), {"d": day}).scalar()


def settled_before(conn: Connection, cutoff: date) -> dict[date, int]:
    """Settled dates before ``cutoff`` with their number of loads."""
    return {day: loads for day, loads in _dates_in(conn, "settled").items() if day < cutoff}


def in_stage(conn: Connection, seen: dict[date, int], stage: str, *, same_load: bool = False) -> set[date]:
    """The dates of ``seen`` in ``stage`` now (and, with ``same_load``, not loaded since)."""
    return {
        day for day, loads in _dates_in(conn, stage).items()
        if day in seen and (not same_load or loads == seen[day])
    }


def still_staged(conn: Connection, table: str, stage: str) -> dict[date, int]:
    """The dates in ``stage`` whose staging ``table`` still holds, with their number of loads.
    On PostgreSQL from the table's partitions (their names, not their rows); on SQLite one
    probe of the date's index per date."""
    dates = _dates_in(conn, stage)
    if conn.dialect.name == "postgresql":
        held = {partition_date(name) for name in partitions(conn, table)}
        return {day: n for day, n in dates.items() if day in held}
    probe = text(f"SELECT 1 FROM {table} WHERE snapshot_date = :d LIMIT 1")
    return {day: n for day, n in dates.items() if conn.execute(probe, {"d": day}).first() is not None}


def _dates_in(conn: Connection, stage: str) -> dict[date, int]:
    rows = conn.execute(text("SELECT snapshot_date, loads FROM staged_dates WHERE stage = :s"), {"s": stage})
    return {as_date(d): n for d, n in rows}


def mark_dropped(conn: Connection, days: set[date]) -> None:
    for day in sorted(days):
        conn.execute(text("UPDATE staged_dates SET stage = 'dropped' WHERE snapshot_date = :d"), {"d": day})


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
