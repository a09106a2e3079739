"""The unit-change mail already sent for a date is found by its date, not by reading the outbox;
unit changes are indexed by date and source.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

Issue 10. Each derivation of a date's unit changes compares them with the unit-change mail
already sent for that date (``sync.notify``), which it found with ``message_id LIKE
'unit-changes:%:<date>%'``: the contract sits between the prefix and the date, so no index
could serve it and every diff and release read the whole outbox, one more message per
contract and night. ``notification_outbox.snapshot_date`` holds the date of a unit-change
message (NULL for other messages), indexed; existing messages get it from their id.

A derivation's window starts after a good snapshot; of that date it needs only the Get Units
Now changes, yet its nightly changes (as many as a night's) were read to be thrown away, one
table row each, wherever they lay. ``ix_unit_changes_date_source (effective_date, source)``
replaces ``ix_unit_changes_effective_date`` and finds a date's changes of one source directly
(every per-date read of ``unit_changes`` names its source).
"""

from datetime import date

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

PREFIX = "unit-changes:"


def message_date(message_id: str) -> date | None:
    """The date of a unit-change message id (``unit-changes:<contract>:<date>``, a correction
    adding ``:correction:<digest>``), as ``sync.notify`` builds it."""
    head = message_id.split(":correction:")[0]
    if not head.startswith(PREFIX) or len(head) < len(PREFIX) + 11 or head[-11] != ":":
        return None
    try:
        return date.fromisoformat(head[-10:])
    except ValueError:
        return None


def upgrade() -> None:
    op.add_column("notification_outbox", sa.Column("snapshot_date", sa.Date))
    conn = op.get_bind()
    ids = conn.execute(
        sa.text("SELECT message_id FROM notification_outbox WHERE kind = 'unit_changes' AND message_id LIKE :p"),
        {"p": PREFIX + "%"},
    ).scalars().all()
    dated = [{"id": i, "d": d} for i in ids if (d := message_date(i)) is not None]
    if dated:
        conn.execute(sa.text("UPDATE notification_outbox SET snapshot_date = :d WHERE message_id = :id"), dated)
    op.create_index("ix_notification_outbox_snapshot_date", "notification_outbox", ["snapshot_date"])
    op.create_index("ix_unit_changes_date_source", "unit_changes", ["effective_date", "source"])
    op.drop_index("ix_unit_changes_effective_date", table_name="unit_changes")


def downgrade() -> None:
    op.create_index("ix_unit_changes_effective_date", "unit_changes", ["effective_date"])
    op.drop_index("ix_unit_changes_date_source", table_name="unit_changes")
    op.drop_index("ix_notification_outbox_snapshot_date", table_name="notification_outbox")
    with op.batch_alter_table("notification_outbox") as batch:
        batch.drop_column("snapshot_date")
