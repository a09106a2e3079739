"""Posted invoices keep whom they billed and what, as posted, and the database refuses to edit them.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06

An invoice's account name and its lines' service names were read from ``accounts`` and
``services`` whenever an invoice was shown or exported, so renaming a customer or a service
re-addressed every invoice ever posted to it: the export of last March, sent again for a
dispute, no longer matched what the customer received. Posting now writes them
(``invoices.account_name``, ``invoice_lines.service_name``), and the invoice, show, list and
export read those. Invoices posted before this upgrade get the names current at the upgrade
(the best record there is; their lines' ``description`` keeps the service name as posted).

"A posted invoice is never edited" was a rule of the code only: any ``UPDATE`` or ``DELETE`` by
hand went through. Triggers now refuse both on ``invoices`` and ``invoice_lines`` (a correction
is an adjustment line on a later invoice). ``TRUNCATE`` and ``DROP`` are not row changes and are
not refused: an operator resetting a warehouse still can.
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

MESSAGE = (
    "a posted invoice is never edited or deleted; a correction is an adjustment line on a later "
    "invoice (run billing after fixing its inputs)"
)
# table, its key (named in PostgreSQL's message), the name column added, how to fill it
_NAMED = (
    ("invoices", "invoice_id", "account_name",
     "SELECT a.name FROM contracts c JOIN accounts a ON a.account_id = c.account_id "
     "WHERE c.contract_id = invoices.contract_id"),
    ("invoice_lines", "line_id", "service_name",
     "SELECT s.name FROM services s WHERE s.service_id = invoice_lines.service_id"),
)


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table, key, column, source in _NAMED:
        op.add_column(table, sa.Column(column, sa.Text))
        op.execute(f"UPDATE {table} SET {column} = ({source})")
        if postgresql:  # SQLite cannot add NOT NULL to a column; posting always writes it
            op.alter_column(table, column, nullable=False)
        _refuse_edits(table, key, postgresql)


def _refuse_edits(table: str, key: str, postgresql: bool) -> None:
    if postgresql:
        op.execute(
            f"""
            CREATE FUNCTION {table}_posted() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION '{table} %: {MESSAGE}', OLD.{key} USING ERRCODE = 'check_violation';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            f"CREATE TRIGGER {table}_posted BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {table}_posted()"
        )
        return
    for event in ("update", "delete"):
        op.execute(
            f"CREATE TRIGGER {table}_posted_{event} BEFORE {event.upper()} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table}: {MESSAGE}'); END"
        )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table, _, column, _ in reversed(_NAMED):
        if postgresql:
            op.execute(f"DROP TRIGGER {table}_posted ON {table}")
            op.execute(f"DROP FUNCTION {table}_posted()")
        else:
            for event in ("update", "delete"):
                op.execute(f"DROP TRIGGER {table}_posted_{event}")
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")  # SQLite 3.35+ too
