"""``billing_stale`` loses its contract index (its rows only append) and never reuses a ``seq``.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05

Issue 10. Every unit change written adds a ``billing_stale`` row (migration 0014). With an index
on ``contract_id`` each row was also an insert into that contract's part of the index, a page
of its own per contract: on SQLite, a night's re-derivation after a year of changes no billing
run had consumed took 1.4 × the second night's (benchmark "Unit history"), against 1.1 ×
without the index. Without it a row only appends to the table. A billing run reads the whole
table once (``billing.settled.read_stale``: it holds what was written since the runs before)
and each contract's transaction reads its rows written since, a range of ``seq``; the preview
and review posting, one contract each, read it whole.

A run now deletes in a contract's transaction rows it read before it: a ``seq`` must never be
used twice. PostgreSQL's identity never is; SQLite's ``INTEGER PRIMARY KEY`` gives the next row
the highest ``seq`` + 1, so a row written after the highest one was consumed took a ``seq`` a
running billing run may still hold, and that run would delete it. On SQLite the table is
rebuilt with ``AUTOINCREMENT`` (its rows kept; a downgrade keeps it: it only stops reuse). The
rebuild copies the rows no billing run has consumed yet.
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # IF EXISTS: on SQLite this DDL is not in the rebuild's transaction; an upgrade retried
    # after a failed rebuild runs it again.
    op.execute("DROP INDEX IF EXISTS ix_billing_stale_contract")
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_with_autoincrement()


def _rebuild_with_autoincrement() -> None:
    """The table again, with its rows and ``seq`` values, and a counter that starts above every
    ``seq`` used so far that is known (the old counter, kept by a downgrade; a table of 0014
    has none, and migrations run while no billing run holds a ``seq``)."""
    conn = op.get_bind()
    counter = 0
    if conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").first():
        counter = conn.exec_driver_sql(
            "SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'billing_stale'").scalar_one()
    # The triggers on unit_changes name the table: a rename that checks them would fail while
    # it is briefly gone, so the rename is the legacy one, which does not.
    op.execute("PRAGMA legacy_alter_table = ON")
    try:
        op.execute("DROP TABLE IF EXISTS billing_stale_new")
        op.execute(
            "CREATE TABLE billing_stale_new (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "contract_id TEXT NOT NULL, service_id TEXT NOT NULL, from_date DATE NOT NULL)"
        )
        op.execute("INSERT INTO billing_stale_new SELECT seq, contract_id, service_id, from_date FROM billing_stale")
        op.execute("DROP TABLE billing_stale")
        op.execute("ALTER TABLE billing_stale_new RENAME TO billing_stale")
    finally:
        op.execute("PRAGMA legacy_alter_table = OFF")
    op.execute("DELETE FROM sqlite_sequence WHERE name IN ('billing_stale', 'billing_stale_new')")
    op.execute(
        "INSERT INTO sqlite_sequence (name, seq) "
        f"SELECT 'billing_stale', MAX({int(counter)}, COALESCE(MAX(seq), 0)) FROM billing_stale"
    )


def downgrade() -> None:
    op.create_index("ix_billing_stale_contract", "billing_stale", ["contract_id"])
