"""Lock the VSA org behind counted services; let outbox deliveries claim a message.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

A service counted in VSA is scoped by its account's ``vsa_org_id`` (SPEC 4.1), so changing
that org, or moving the contract to another account, would re-scope the service as surely as
changing its machine group: both are refused once such a service exists (SPEC 4.2), on both
engines. ``notification_outbox.claimed_at`` marks a message a delivery is sending, so a
second delivery running at the same moment leaves it alone.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ORG_MESSAGE = (
    "the VSA org of an account with services counted in VSA (rmm_agent_count) is locked; "
    "add a new account for the new org"
)
ACCOUNT_MESSAGE = (
    "a contract with services counted in VSA (rmm_agent_count) cannot move to another account; "
    "add a new contract"
)
ACCOUNT_HAS_COUNTED = (
    "EXISTS (SELECT 1 FROM services s JOIN contracts c ON c.contract_id = s.contract_id "
    "WHERE c.account_id = OLD.account_id AND s.units_source = 'rmm_agent_count')"
)
CONTRACT_HAS_COUNTED = (
    "EXISTS (SELECT 1 FROM services s WHERE s.contract_id = OLD.contract_id "
    "AND s.units_source = 'rmm_agent_count')"
)


def upgrade() -> None:
    op.add_column("notification_outbox", sa.Column("claimed_at", sa.DateTime(timezone=True)))
    if op.get_bind().dialect.name == "postgresql":
        _postgres_trigger("accounts", "accounts_lock_org", "vsa_org_id", ACCOUNT_HAS_COUNTED,
                          "account %: " + ORG_MESSAGE, "OLD.account_id")
        _postgres_trigger("contracts", "contracts_lock_account", "account_id", CONTRACT_HAS_COUNTED,
                          "contract %: " + ACCOUNT_MESSAGE, "OLD.contract_id")
    else:
        _sqlite_trigger("accounts", "accounts_lock_org", "vsa_org_id", ACCOUNT_HAS_COUNTED,
                        "account: " + ORG_MESSAGE)
        _sqlite_trigger("contracts", "contracts_lock_account", "account_id", CONTRACT_HAS_COUNTED,
                        "contract: " + ACCOUNT_MESSAGE)


def _postgres_trigger(table: str, name: str, column: str, guard: str, message: str, subject: str) -> None:
    op.execute(
        f"""
        CREATE FUNCTION {name}() RETURNS trigger AS $$
        BEGIN
            IF OLD.{column} IS DISTINCT FROM NEW.{column} AND {guard} THEN
                RAISE EXCEPTION '{message}', {subject} USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END;
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(f"CREATE TRIGGER {name} BEFORE UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()")


def _sqlite_trigger(table: str, name: str, column: str, guard: str, message: str) -> None:
    op.execute(
        f"""
        CREATE TRIGGER {name} BEFORE UPDATE OF {column} ON {table}
        FOR EACH ROW WHEN OLD.{column} IS NOT NEW.{column} AND {guard}
        BEGIN
            SELECT RAISE(ABORT, '{message}');
        END
        """
    )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, name in (("accounts", "accounts_lock_org"), ("contracts", "contracts_lock_account")):
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if postgres else ""))
        if postgres:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    with op.batch_alter_table("notification_outbox") as batch:
        batch.drop_column("claimed_at")
