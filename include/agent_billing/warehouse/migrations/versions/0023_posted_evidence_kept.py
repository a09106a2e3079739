"""What explains a posted invoice is kept as posted: the agents behind each posted line, and the
history of contract edits; the database refuses to edit or delete either.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07

Issue 10 (reviews).

The agents behind a prorated line were read from ``unit_change_agents``, which every
re-derivation of the line's night rewrites: a backfill that counted a change again, or a re-run
after a service's end was moved earlier (which deletes the change), changed or emptied the
machines ``invoices show`` gave for a line already sent to the customer, though the line itself
is never edited; and an adjustment line, which carries the change id of the line it corrects,
was shown with them too, a credit for days reading as machines billed. Posting now copies them
to ``invoice_line_agents``: one row per agent behind the unit change of each posted prorated
line, as they are when it is posted, and of each adjustment that changes such a line's units
(the change's agents as corrected); an adjustment of days only, or of a line that no longer
applies, has none. Prorated lines posted before this upgrade get the agents their changes have
at the upgrade only where the change still has the line's units and no adjustment changed them
(the machines as posted are otherwise not known: the line gets none, rather than another
night's); adjustments posted before it get none.

``contract_edits`` (0022) kept every change ``contracts apply`` makes so that finance can trace a
credit to the edit that caused it; "rows are only added" was a rule of the code only. Its
unit prices are written as money from this release on (``12.50``, not ``12.5``): the rows
0022's code wrote are rewritten so, once, before they are kept for good, so that a query on a
price matches old and new rows alike.

Triggers refuse ``UPDATE`` and ``DELETE`` on both tables, as 0018 does for posted invoices.
``TRUNCATE`` and ``DROP`` are not row changes and are not refused.
"""

from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

_KEPT = (  # table, its key (named in PostgreSQL's message), what it is
    ("invoice_line_agents", "line_id", "the agents behind a posted line, as posted: never edited or deleted"),
    ("contract_edits", "edit_id", "the history of contract edits: rows are only added, never edited or deleted"),
)


def upgrade() -> None:
    op.create_table(
        "invoice_line_agents",
        sa.Column("line_id", sa.Text, sa.ForeignKey("invoice_lines.line_id"), primary_key=True),
        sa.Column("agent_id", sa.Text, primary_key=True),
        sa.Column("agent_name", sa.Text),
        sa.Column("event", sa.Text, nullable=False),
        sa.CheckConstraint("event IN ('added', 'removed', 'moved_in', 'moved_out')",
                           name="ck_invoice_line_agents_event"),
    )
    op.execute(
        """
        INSERT INTO invoice_line_agents (line_id, agent_id, agent_name, event)
        SELECT l.line_id, a.agent_id, a.agent_name, a.event
        FROM invoice_lines l
        JOIN unit_changes uc ON uc.change_id = l.change_id AND uc.delta = l.units
        JOIN unit_change_agents a ON a.change_id = l.change_id
        WHERE l.kind = 'prorated'
          AND NOT EXISTS (SELECT 1 FROM invoice_lines adj WHERE adj.adjusts_line_id = l.line_id AND adj.units <> 0)
        """
    )
    bind = op.get_bind()
    prices = bind.execute(sa.text(
        "SELECT edit_id, old_value, new_value FROM contract_edits WHERE field = 'unit_price'")).all()
    if prices:
        bind.execute(sa.text("UPDATE contract_edits SET old_value = :old, new_value = :new WHERE edit_id = :id"),
                     [{"id": i, "old": _money(old), "new": _money(new)} for i, old, new in prices])
    postgresql = bind.dialect.name == "postgresql"
    for table, key, what in _KEPT:
        _refuse_edits(table, key, what, postgresql)


def _money(value: str | None) -> str | None:
    """A unit price as money, with at least two decimals (``plan.as_text`` from this release)."""
    if value is None:
        return None
    price = Decimal(value)
    return f"{price.quantize(Decimal(1).scaleb(min(price.normalize().as_tuple().exponent, -2))):f}"


def _refuse_edits(table: str, key: str, what: str, postgresql: bool) -> None:
    if postgresql:
        op.execute(
            f"""
            CREATE FUNCTION {table}_kept() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION '{table} %: {what}', OLD.{key} USING ERRCODE = 'check_violation';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            f"CREATE TRIGGER {table}_kept BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {table}_kept()"
        )
        return
    for event in ("update", "delete"):
        op.execute(
            f"CREATE TRIGGER {table}_kept_{event} BEFORE {event.upper()} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table}: {what}'); END"
        )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table, _, _ in _KEPT:
        if postgresql:
            op.execute(f"DROP TRIGGER {table}_kept ON {table}")
            op.execute(f"DROP FUNCTION {table}_kept()")
        else:
            for event in ("update", "delete"):
                op.execute(f"DROP TRIGGER {table}_kept_{event}")
    op.drop_table("invoice_line_agents")
