"""Every writer of ``unit_changes`` takes the unit-history lock, hand SQL included (PostgreSQL).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06

A billing run reads every contract's ``billing_stale`` rows once, then each contract's
transaction adds its rows with a ``seq`` above the last one read (``billing.settled``). That
holds only if rows commit in ``seq`` order. The pipeline's writers did: they hold the
unit-history advisory lock (``sync.changes.lock_unit_history``) from before their first row
to their commit. A person's SQL did not: a change inserted by hand, committed after a pipeline
writer's later ``seq`` and after the run's read, was below the range the contract's transaction
read, and a night that keeps unchanged services' pending lines kept its service's lines
without it (until the next night).

A statement trigger now takes the same lock, exclusively and until commit, before any row of an
``INSERT``, ``UPDATE`` or ``DELETE`` on ``unit_changes``; a writer that holds it already (the
pipeline's) takes it again at no cost. Writers are serialised, so every row committed has a
``seq`` below any row not yet committed: a run's read misses none below its last ``seq``. A
person's open transaction on ``unit_changes`` now makes the nightly sync and billing wait for
it, as the pipeline's own writers do; one that locked rows the pipeline locks (a contract, a
service) before its first write to ``unit_changes`` takes the lock after them, against the
pipeline's order, and can deadlock with it (PostgreSQL aborts one of the two): such a
transaction takes the lock first (docs/runbook.md). SQLite has one writer at a time: nothing
to do there.
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

# ``sync.changes.UNIT_HISTORY_LOCK`` as released: a warehouse keeps the key its upgrade wrote
# (tests/warehouse/test_unit_history_lock.py checks that the two agree)
UNIT_HISTORY_LOCK = 7_255_110_501


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE FUNCTION lock_unit_history() RETURNS trigger AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock({int(UNIT_HISTORY_LOCK)});
            RETURN NULL;
        END;
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        "CREATE TRIGGER lock_unit_history BEFORE INSERT OR UPDATE OR DELETE ON unit_changes "
        "FOR EACH STATEMENT EXECUTE FUNCTION lock_unit_history()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER lock_unit_history ON unit_changes")
    op.execute("DROP FUNCTION lock_unit_history()")
