"""``sync_runs``: one row per snapshot date with its status (complete/gap/quarantined/failed/discarded)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, text

from agent_billing.warehouse.values import as_date

# Any bigint: the class of the PostgreSQL advisory locks that serialise the runs of one date.
SNAPSHOT_DATE_LOCK = 7_255_110_502
#: Statuses a failed re-run never takes away: the data of the date's last good run stand.
FINAL_STATUSES = ("complete", "quarantined", "discarded")


def record_run(conn: Connection, snapshot_date: date, status: str, **fields: Any) -> None:
    """Insert or update the run row of a date (``fields``: observed_at, agents_total, message ...),
    atomically on both engines (``INSERT … ON CONFLICT DO UPDATE``)."""
    values = {"snapshot_date": snapshot_date, "status": status, "updated_at": datetime.now(UTC), **fields}
    cols = ", ".join(values)
    sets = ", ".join(f"{k} = excluded.{k}" for k in values if k != "snapshot_date")
    conn.execute(
        text(
            f"INSERT INTO sync_runs ({cols}) VALUES ({', '.join(':' + k for k in values)}) "
            f"ON CONFLICT (snapshot_date) DO UPDATE SET {sets}"
        ),
        values,
    )


def lock_snapshot_date(conn: Connection, snapshot_date: date) -> None:
    """Serialise the runs of one date for the rest of the transaction: two re-runs of a date
    (a retry and a backfill, say) load, count and diff one after the other, never interleaved.
    PostgreSQL: a transaction-scoped advisory lock per date; SQLite has one writer anyway."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(CAST(:key AS integer), CAST(:day AS integer))"),
            {"key": SNAPSHOT_DATE_LOCK % 2**31, "day": snapshot_date.toordinal()},
        )


def status_after_failure(conn: Connection, snapshot_date: date) -> str:
    """The status a date keeps when a run of it fails: a final status stays (its data stand),
    anything else becomes ``failed``."""
    run = get_run(conn, snapshot_date)
    return run["status"] if run and run["status"] in FINAL_STATUSES else "failed"


def get_run(conn: Connection, snapshot_date: date) -> dict[str, Any] | None:
    row = conn.execute(
        text("SELECT * FROM sync_runs WHERE snapshot_date = :d"), {"d": snapshot_date}
    ).mappings().first()
    return dict(row) if row else None


def previous_good(conn: Connection, snapshot_date: date) -> date | None:
    """The latest complete snapshot date before ``snapshot_date``."""
    value = conn.execute(
        text("SELECT MAX(snapshot_date) FROM sync_runs WHERE status = 'complete' AND snapshot_date < :d"),
        {"d": snapshot_date},
    ).scalar()
    return as_date(value) if value is not None else None
