"""Unit counts and unit changes (SPEC 4.1, 4.3, 4.4), in three parts.

- ``counting``: the agents each service counts on a snapshot date (set-based SQL).
- ``history``: the pure derivation of unit changes from observations (no database).
- ``store``: reads a window's observations, replaces its changes; the one writer of
  ``unit_changes`` (nightly, Get Units Now, manual).
"""

from agent_billing.sync.changes.counting import CountResult, clear_counts, count_units, recounted
from agent_billing.sync.changes.history import (
    MANUAL,
    NIGHTLY,
    READING,
    Change,
    Observation,
    Position,
    change_id,
    day_start,
    nightly_position,
)
from agent_billing.sync.changes.store import (
    UNIT_HISTORY_LOCK,
    Rederived,
    day_change,
    insert_changes,
    lock_unit_history,
    record_manual_change,
    record_reading,
    rederive_around,
    rederive_from,
    refresh_service_units,
    share_unit_history,
)

__all__ = [
    "MANUAL", "NIGHTLY", "READING", "UNIT_HISTORY_LOCK", "Change", "CountResult", "Observation",
    "Position", "Rederived", "change_id", "clear_counts", "count_units", "day_change", "day_start", "insert_changes",
    "lock_unit_history", "nightly_position", "recounted", "record_manual_change", "record_reading",
    "refresh_service_units", "rederive_around", "rederive_from", "share_unit_history",
]
