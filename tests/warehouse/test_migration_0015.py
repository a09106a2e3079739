"""Migration 0015 drops the contract index of ``billing_stale`` (its rows only append) and keeps
its rows: a warehouse with stale rows upgrades, its next run walks their months and consumes
them, and the next row does not take a consumed row's ``seq`` (SQLite's table is rebuilt with
``AUTOINCREMENT``, from 0014's plain key and again after a downgrade). A downgrade puts the index
back. Both engines."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from agent_billing.warehouse import upgrade
from agent_billing.warehouse.migrate import alembic_config

from ..billing.conftest import Books


def indexes(engine) -> set[str]:
    return {i["name"] for i in inspect(engine).get_indexes("billing_stale")}


def test_stale_rows_survive_the_upgrade_and_the_next_run_consumes_them(warehouse):
    books = Books(warehouse)
    books.contract("C", [books.rmm("S", "10.00", "2024-01-01")], start="2024-01-01")
    books.count("S", "2024-01-01", 4)
    for day in ("2024-01-01", "2024-02-01", "2024-03-01", "2024-03-02"):
        books.bill(day)
    command.downgrade(alembic_config(warehouse), "0013")
    upgrade(warehouse, "0014")  # the table as 0014 makes it (on SQLite a plain integer key)
    assert indexes(warehouse) == {"ix_billing_stale_contract"}
    books.change("S", "2024-02-10", 4, 6)  # marked stale under 0014
    books.change("S", "2024-02-20", 6, 7)
    books.delete("S:2024-02-20:nightly_sync")  # three rows: two inserts and a delete

    upgrade(warehouse)
    assert indexes(warehouse) == set()
    with warehouse.connect() as conn:
        kept = conn.execute(text("SELECT seq, contract_id, service_id FROM billing_stale ORDER BY seq")).all()
    assert [row[1:] for row in kept] == [("C", "S")] * 3
    consumed = kept[-1][0]
    books.bill("2024-03-03")
    assert {x["period_start"].month for x in books.pending("C")} == {2, 3}
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM billing_stale")).scalar_one() == 0
    books.change("S", "2024-01-20", 4, 5)
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT seq FROM billing_stale")).scalar_one() > consumed

    with warehouse.connect() as conn:
        newest = conn.execute(text("SELECT seq FROM billing_stale")).scalar_one()
    books.bill("2024-03-04")  # consumes it: the table is empty

    command.downgrade(alembic_config(warehouse), "0014")
    assert indexes(warehouse) == {"ix_billing_stale_contract"}
    upgrade(warehouse)  # rebuilt again: the counter goes on from where it was
    books.change("S", "2024-01-25", 5, 3)
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT seq FROM billing_stale")).scalar_one() > newest


def test_an_upgrade_retried_after_a_failed_rebuild_completes(warehouse):
    """SQLite runs this migration's first DDL outside the rebuild's transaction: an upgrade that
    failed in the rebuild leaves the index dropped (and the new table begun); run again, it
    completes."""
    command.downgrade(alembic_config(warehouse), "0014")
    with warehouse.begin() as conn:  # what a rebuild that failed half-way leaves
        conn.execute(text("DROP INDEX ix_billing_stale_contract"))
        if warehouse.dialect.name == "sqlite":
            conn.execute(text("CREATE TABLE billing_stale_new (seq INTEGER PRIMARY KEY)"))
    upgrade(warehouse)
    assert indexes(warehouse) == set()
    assert "billing_stale_new" not in inspect(warehouse).get_table_names()
