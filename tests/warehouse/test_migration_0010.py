"""Migration 0010 on a warehouse whose outbox already holds mail: unit-change messages (and
their corrections) get the date they are about, other messages none; the mail already sent
for a date is then found by that date. Both engines."""

from __future__ import annotations

from datetime import UTC, date, datetime

from alembic import command
from sqlalchemy import text

from agent_billing.sync.notify import Told, _sent_unit_change_mail
from agent_billing.warehouse import upgrade
from agent_billing.warehouse.migrate import alembic_config

MESSAGES = {  # message_id: (kind, the date it gets)
    "unit-changes:C-1:2024-03-02": ("unit_changes", date(2024, 3, 2)),
    "unit-changes:C-1:2024-03-02:correction:0123456789ab": ("unit_changes", date(2024, 3, 2)),
    "unit-changes:C:2:2024-03-03": ("unit_changes", date(2024, 3, 3)),
    "units-now:S-1:2024-03-02T15:00:00+00:00": ("unit_changes", None),
    "quarantine:2024-03-02": ("quarantine", None),
    "gap:2024-03-02": ("gap", None),
}


def test_unit_change_mail_gets_its_date_and_is_found_by_it(warehouse):
    command.downgrade(alembic_config(warehouse), "0009")
    sent = datetime(2024, 3, 3, 8, tzinfo=UTC)
    with warehouse.begin() as conn:
        for n, (message_id, (kind, _)) in enumerate(MESSAGES.items()):
            conn.execute(
                text("INSERT INTO notification_outbox (message_id, kind, recipients, subject, body, created_at, "
                     "sent_at) VALUES (:id, :kind, 'a@b.example', 's', :body, :at, :at)"),
                {"id": message_id, "kind": kind, "body": f"- line {n}\n", "at": sent.replace(minute=n)},
            )
    upgrade(warehouse)
    with warehouse.connect() as conn:
        dates = dict(conn.execute(text("SELECT message_id, snapshot_date FROM notification_outbox")).all())
        assert {k: (str(v)[:10] if v else None) for k, v in dates.items()} == {
            k: (str(d) if d else None) for k, (_, d) in MESSAGES.items()
        }
        assert _sent_unit_change_mail(conn, date(2024, 3, 2)) == {"C-1": Told(
            "unit-changes:C-1:2024-03-02:correction:0123456789ab", "- line 1\n")}
        assert _sent_unit_change_mail(conn, date(2024, 3, 3)) == {"C:2": Told(
            "unit-changes:C:2:2024-03-03", "- line 2\n")}
    command.downgrade(alembic_config(warehouse), "0009")
    upgrade(warehouse)
