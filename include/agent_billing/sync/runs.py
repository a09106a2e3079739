"""``sync_runs``: one row per snapshot date with its status (complete/gap/quarantined/failed/discarded)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, text

from agent_billing.warehouse.values import as_date


def record_run(conn: Connection, snapshot_date: date, status: str, **fields: Any) -> None:
    """Insert or update the run row of a date (``fields``: observed_at, agents_total, message ...)."""
    values = {"snapshot_date": snapshot_date, "status": status, "updated_at": datetime.now(UTC), **fields}
    exists = conn.execute(
        text("SELECT 1 FROM sync_runs WHERE snapshot_date = :d"), {"d": snapshot_date}
    ).first()
    if exists:
        sets = ", ".join(f"{k} = :{k}" for k in values if k != "snapshot_date")
        conn.execute(text(f"UPDATE sync_runs SET {sets} WHERE snapshot_date = :snapshot_date"), values)
    else:
        cols = ", ".join(values)
        conn.execute(
            text(f"INSERT INTO sync_runs ({cols}) VALUES ({', '.join(':' + k for k in values)})"), values
        )


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
