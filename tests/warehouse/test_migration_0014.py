"""Migration 0014 on a warehouse already billed: nothing is settled after the upgrade, so each
contract's next run walks its whole ledger once (and bills what it billed before); from then on
every write of a unit change marks its month stale, whoever writes it; a downgrade removes the
tables and the trigger and unit changes are written as before. Both engines."""

from __future__ import annotations

from alembic import command
from sqlalchemy import inspect, text

from agent_billing.warehouse import upgrade
from agent_billing.warehouse.migrate import alembic_config

from ..billing.conftest import Books


def rows(engine, sql: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def test_a_billed_warehouse_upgrades_and_its_next_run_walks_everything_once(warehouse):
    books = Books(warehouse)
    books.contract("C", [books.rmm("S", "10.00", "2024-01-01")], start="2024-01-01")
    books.count("S", "2024-01-01", 4)
    change = books.change("S", "2024-02-10", 4, 6)
    for day in ("2024-01-01", "2024-02-01", "2024-03-01"):
        books.bill(day)  # (billed by this code: a warehouse billed at 0013 has the same rows)
    command.downgrade(alembic_config(warehouse), "0013")
    books.rewrite(change, 4, 5)  # written under 0013: no trigger saw it

    upgrade(warehouse)
    assert rows(warehouse, "SELECT * FROM billing_settled") == []
    books.bill("2024-03-02")  # the whole ledger: February's and March's corrections
    assert sorted((x["period_start"].month, x["units"]) for x in books.pending("C")) == [(2, -1), (3, -1)]
    assert [(c, str(month)) for c, month in rows(
        warehouse, "SELECT contract_id, settled_before FROM billing_settled")] == [("C", "2024-02-01")]

    books.change("S", "2024-01-20", 4, 7)
    assert [(sid, str(day)) for sid, day in rows(warehouse, "SELECT service_id, from_date FROM billing_stale")] == [
        ("S", "2024-01-20")]

    command.downgrade(alembic_config(warehouse), "0013")
    assert {"billing_settled", "billing_stale"}.isdisjoint(inspect(warehouse).get_table_names())
    books.delete(change)  # no trigger left to write to a table that is gone
    assert rows(warehouse, "SELECT COUNT(*) FROM unit_changes") == [(1,)]
    upgrade(warehouse)
    assert rows(warehouse, "SELECT COUNT(*) FROM billing_stale") == [(0,)]
