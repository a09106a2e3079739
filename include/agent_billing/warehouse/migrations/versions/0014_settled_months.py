"""Settled months: a nightly billing run walks only the months that can have changed.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04

Issue 10. Every billing run reconciled each contract's whole ledger, so the night grew with
history (3.1 × from the second night to the last of a year at 20k services). A run now records
per contract the months before which the posted ledger equals the expected one
(``billing_settled``, with a digest of the contract's other inputs), and the next run starts
there. ``billing_stale`` is written by a trigger on ``unit_changes``: any insert, delete or
update of a unit change, by any writer (the sync, Get Units Now, a manual change, a person's
SQL), names its contract, service and date, and the contract's next run starts at that date's
month (``billing.settled``). ``ix_invoice_lines_contract_period`` serves the posted
ledger of the months walked.

Two rules the months rely on are enforced here: a unit change's service, date and source (its
``change_id``) cannot be updated (a correction is a delete and an insert, so a posted line and
its adjustments stay in one month), and a service cannot move to another contract (``contracts
apply`` refuses it too): each contract's stale rows and digest would belong to the other one.

Nothing is settled yet after the upgrade: each contract's next run walks its whole ledger once.
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_ROW = (
    "INSERT INTO billing_stale (contract_id, service_id, from_date) "
    "SELECT s.contract_id, {0}.service_id, {0}.effective_date FROM services s WHERE s.service_id = {0}.service_id;"
)
# (table, trigger name, identity columns, message): updates a trigger refuses
_FIXED = (
    ("unit_changes", "unit_changes_identity", ("change_id", "service_id", "effective_date", "source"),
     "the service, date and source of a unit change make its change_id and cannot change; "
     "delete it and insert the corrected change"),
    ("services", "services_contract_fixed", ("contract_id",),
     "a service cannot move to another contract; end it and add a new one to the other contract"),
)


def upgrade() -> None:
    op.create_table(
        "billing_settled",
        sa.Column("contract_id", sa.Text, sa.ForeignKey("contracts.contract_id"), primary_key=True),
        sa.Column("settled_before", sa.Date, nullable=False),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("inputs_digest", sa.Text, nullable=False),
    )
    op.create_table(
        "billing_stale",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("contract_id", sa.Text, nullable=False),
        sa.Column("service_id", sa.Text, nullable=False),
        sa.Column("from_date", sa.Date, nullable=False),
    )
    op.create_index("ix_billing_stale_contract", "billing_stale", ["contract_id"])
    op.create_index("ix_invoice_lines_contract_period", "invoice_lines", ["contract_id", "period_start"])
    op.drop_index("ix_invoice_lines_contract", table_name="invoice_lines")
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table, name, columns, message in _FIXED:
        if postgresql:
            changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in columns)
            op.execute(
                f"""
                CREATE FUNCTION {name}() RETURNS trigger AS $$
                BEGIN
                    IF {changed} THEN
                        RAISE EXCEPTION '%: {message}', OLD.{columns[0]} USING ERRCODE = 'check_violation';
                    END IF;
                    RETURN NEW;
                END;
                $$ LANGUAGE plpgsql
                """
            )
            op.execute(f"CREATE TRIGGER {name} BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()")
        else:
            changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in columns)
            op.execute(
                f"CREATE TRIGGER {name} BEFORE UPDATE ON {table} FOR EACH ROW WHEN {changed} "
                f"BEGIN SELECT RAISE(ABORT, '{table}: {message}'); END"
            )
    if postgresql:
        op.execute(
            f"""
            CREATE FUNCTION billing_stale_unit_change() RETURNS trigger AS $$
            BEGIN
                IF TG_OP <> 'INSERT' THEN {_ROW.format("OLD")} END IF;
                IF TG_OP <> 'DELETE' THEN {_ROW.format("NEW")} END IF;
                RETURN NULL;
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER billing_stale AFTER INSERT OR UPDATE OR DELETE ON unit_changes "
            "FOR EACH ROW EXECUTE FUNCTION billing_stale_unit_change()"
        )
        return
    for event, rows in (("insert", ("NEW",)), ("delete", ("OLD",)), ("update", ("OLD", "NEW"))):
        op.execute(
            f"CREATE TRIGGER billing_stale_{event} AFTER {event.upper()} ON unit_changes "
            f"FOR EACH ROW BEGIN {' '.join(_ROW.format(r) for r in rows)} END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER billing_stale ON unit_changes")
        op.execute("DROP FUNCTION billing_stale_unit_change()")
        for table, name, _, _ in _FIXED:
            op.execute(f"DROP TRIGGER {name} ON {table}")
            op.execute(f"DROP FUNCTION {name}()")
    else:
        for event in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER billing_stale_{event}")
        for _, name, _, _ in _FIXED:
            op.execute(f"DROP TRIGGER {name}")
    op.create_index("ix_invoice_lines_contract", "invoice_lines", ["contract_id"])
    op.drop_index("ix_invoice_lines_contract_period", table_name="invoice_lines")
    op.drop_table("billing_stale")
    op.drop_table("billing_settled")
