"""Limits of accounts, contracts and services in the database too.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

The limits of the contracts file (``agent_billing.contracts.limits``: id and name lengths,
the unit price range, end on or after start) hold for every writer, not only for
``contracts apply``. PostgreSQL gets CHECK constraints, added ``NOT VALID`` so that an
upgrade never fails on rows written before (new and updated rows are checked); SQLite, which
cannot add a constraint to a table, gets BEFORE INSERT/UPDATE triggers with the same rules.
"""

from alembic import op

from agent_billing.contracts.limits import TEXT_LIMITS, UNIT_PRICE_MAX

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _rules() -> dict[str, list[tuple[str, str]]]:
    """table → [(constraint name, condition that must hold)]; ``{row}`` prefixes each column
    (empty in a CHECK constraint, ``NEW.`` in a SQLite trigger)."""
    rules: dict[str, list[tuple[str, str]]] = {}
    for (table, column), limit in TEXT_LIMITS.items():
        rules.setdefault(table, []).append(
            (f"ck_{table}_{column}_length", f"length({{row}}{column}) <= {limit}")
        )
    rules["services"].append(
        ("ck_services_unit_price_range",
         f"{{row}}unit_price >= 0 AND {{row}}unit_price <= {UNIT_PRICE_MAX}")
    )
    for table in ("contracts", "services"):
        rules[table].append(
            (f"ck_{table}_end_after_start", "{row}end_date IS NULL OR {row}end_date >= {row}start_date")
        )
    return rules


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, rules in _rules().items():
        if postgres:
            for name, condition in rules:
                op.execute(
                    f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({condition.format(row='')}) NOT VALID"
                )
            continue
        broken = " OR ".join(f"NOT ({condition.format(row='NEW.')})" for _, condition in rules)
        message = f"{table}: a limit of the contracts file is violated (see docs/contracts.md)"
        for event in ("INSERT", "UPDATE"):
            op.execute(
                f"""
                CREATE TRIGGER ck_{table}_{event.lower()} BEFORE {event} ON {table}
                FOR EACH ROW WHEN {broken}
                BEGIN
                    SELECT RAISE(ABORT, '{message}');
                END
                """
            )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, rules in _rules().items():
        if postgres:
            for name, _ in rules:
                op.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}")
        else:
            for event in ("insert", "update"):
                op.execute(f"DROP TRIGGER IF EXISTS ck_{table}_{event}")
