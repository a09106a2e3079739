"""Migration 0015 drops the contract index of ``billing_stale`` (its rows only append) and keeps
its rows: a warehouse with stale rows upgrades, its next run walks their months and consumes
them, and the next row does not take a consumed row's ``seq`` (SQLite's table is rebuilt with
``AUTOINCREMENT``). A downgrade puts the index back. Both engines."""

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
    command.downgrade(alembic_config(warehouse), "0014")
    assert indexes(warehouse) == {"ix_billing_stale_contract"}
    books.change("S", "2024-02-10", 4, 6)  # marked stale under 0014

    upgrade(warehouse)
    assert indexes(warehouse) == set()
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT contract_id, service_id FROM billing_stale")).all() == [("C", "S")]
    with warehouse.connect() as conn:
        (consumed,) = conn.execute(text("SELECT seq FROM billing_stale")).scalars().all()
    books.bill("2024-03-03")
    assert {x["period_start"].month for x in books.pending("C")} == {2, 3}
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM billing_stale")).scalar_one() == 0
    books.change("S", "2024-01-20", 4, 5)
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT seq FROM billing_stale")).scalar_one() > consumed
