"""The database refuses to edit or delete ``contract_edits``: the history of contract edits is
evidence, as a posted invoice is.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07

Issue 10 (reviews). 0022 kept every change ``contracts apply`` makes so that finance can trace a
credit to the edit that caused it; "rows are only added" was a rule of the code only, and an
``UPDATE`` or ``DELETE`` by hand went through. Triggers now refuse both, as 0018 does for posted
invoices. ``TRUNCATE`` and ``DROP`` are not row changes and are not refused.
"""

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

MESSAGE = "contract_edits is the history of contract edits: rows are only added, never edited or deleted"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION contract_edits_kept() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'contract edit %: {MESSAGE}', OLD.edit_id USING ERRCODE = 'check_violation';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER contract_edits_kept BEFORE UPDATE OR DELETE ON contract_edits "
            "FOR EACH ROW EXECUTE FUNCTION contract_edits_kept()"
        )
        return
    for event in ("update", "delete"):
        op.execute(
            f"CREATE TRIGGER contract_edits_kept_{event} BEFORE {event.upper()} ON contract_edits "
            f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER contract_edits_kept ON contract_edits")
        op.execute("DROP FUNCTION contract_edits_kept()")
        return
    for event in ("update", "delete"):
        op.execute(f"DROP TRIGGER contract_edits_kept_{event}")
