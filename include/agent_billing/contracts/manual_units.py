"""A manual service's new units, recorded as a unit change so that billing prorates them.

Kept apart on purpose: unit change ids are to get a single writer (the sync's), and this is
the one place ``contracts apply`` writes ``unit_changes``.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import Connection, text


def _record_manual_change(conn: Connection, service_id: str, before: int, after: int, effective: date) -> None:
    """Write ``before → after`` effective ``effective``; a second edit on the same day replaces
    the first one (its ``units_before`` is kept)."""
    params = {"service_id": service_id, "effective_date": effective, "source": "manual"}
    same_day = conn.execute(
        text(
            "SELECT units_before FROM unit_changes WHERE service_id = :service_id "
            "AND effective_date = :effective_date AND source = :source"
        ),
        params,
    ).scalar()
    if same_day is not None:
        before = same_day
        conn.execute(
            text(
                "DELETE FROM unit_changes WHERE service_id = :service_id "
                "AND effective_date = :effective_date AND source = :source"
            ),
            params,
        )
    if after == before:
        return
    conn.execute(
        text(
            "INSERT INTO unit_changes (change_id, service_id, effective_date, units_before, "
            "units_after, delta, source) VALUES (:change_id, :service_id, :effective_date, "
            ":before, :after, :delta, :source)"
        ),
        {
            **params,
            "change_id": f"{service_id}:{effective.isoformat()}:manual",
            "before": before,
            "after": after,
            "delta": after - before,
        },
    )
