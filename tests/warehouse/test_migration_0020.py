"""Migration 0020 on a warehouse with pending lines: their date moves from every line to one row
per contract (``billing_pending_runs``), ``billing_review`` shows the same rows, and billing
goes on from there; a downgrade puts the date back on the lines. Both engines."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import inspect, text

from agent_billing.billing import post_reviewed
from agent_billing.warehouse import upgrade
from agent_billing.warehouse.migrate import alembic_config

from ..billing.conftest import Books

REVIEW = ("SELECT contract_id, service_id, kind, period_start, amount, as_of FROM billing_review "
          "ORDER BY contract_id, service_id, period_start, kind")


def rows(engine, sql: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(str(v) for v in r) for r in conn.execute(text(sql))]


def test_pending_lines_keep_their_date_through_the_upgrade_and_back(warehouse):
    books = Books(warehouse)
    books.contract("R", [books.rmm(s, "10.00", "2024-01-01") for s in ("S", "U")], start="2024-01-01",
                   posting="review")
    books.contract("A", [books.rmm("T", "10.00", "2024-01-01")], start="2024-01-01")
    for service in ("S", "T", "U"):
        books.count(service, "2024-01-01", 4)
    books.bill("2024-01-01")  # A's January invoice
    books.change("T", "2024-01-10", 4, 6)  # after the invoice: pending until February's
    books.bill("2024-01-10")
    books.bill("2024-01-11")
    review = rows(warehouse, REVIEW)
    assert [(c, s, kind, as_of) for c, s, kind, *_, as_of in review] == [
        ("A", "T", "prorated", "2024-01-11"), ("R", "S", "normal", "2024-01-11"), ("R", "U", "normal", "2024-01-11")]

    command.downgrade(alembic_config(warehouse), "0019")
    assert "billing_pending_runs" not in inspect(warehouse).get_table_names()
    assert rows(warehouse, REVIEW) == review  # the date is back on every line
    with warehouse.begin() as conn:  # lines of one contract dated apart (as a 0019 run never left them)
        conn.execute(text("UPDATE billing_pending SET as_of = '2024-01-09' WHERE service_id = 'S'"))

    upgrade(warehouse)
    assert "as_of" not in {c["name"] for c in inspect(warehouse).get_columns("billing_pending")}
    assert rows(warehouse, "SELECT contract_id, as_of FROM billing_pending_runs ORDER BY contract_id") == [
        ("A", "2024-01-11"), ("R", "2024-01-11")]  # the latest of a contract's lines
    assert rows(warehouse, REVIEW) == review

    books.bill("2024-01-12")  # a quiet night keeps every line and dates them as of itself
    assert rows(warehouse, REVIEW) == [(*r[:-1], "2024-01-12") for r in review]
    post_reviewed(warehouse, "R")
    assert rows(warehouse, "SELECT contract_id FROM billing_pending_runs") == [("A",)]
    assert {r[0] for r in rows(warehouse, REVIEW)} == {"A"}


@pytest.mark.parametrize("warehouse_url", ["postgresql"], indirect=True)
def test_the_review_view_keeps_its_grants_and_the_views_built_on_it(warehouse):
    """On PostgreSQL the upgrade replaces ``billing_review`` in place: dropping it would take
    finance's grants with it, and a view of theirs built on it would stop the upgrade."""
    command.downgrade(alembic_config(warehouse), "0019")
    with warehouse.begin() as conn:
        conn.execute(text("GRANT SELECT ON billing_review TO PUBLIC"))
        conn.execute(text("CREATE VIEW finance_pending AS SELECT contract_id, as_of FROM billing_review"))
        granted = conn.execute(text("SELECT relacl::text FROM pg_class WHERE relname = 'billing_review'")).scalar()
    assert "=r/" in granted  # PUBLIC may select
    upgrade(warehouse)
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT relacl::text FROM pg_class WHERE relname = 'billing_review'")).scalar() == granted
        assert conn.execute(text("SELECT COUNT(*) FROM finance_pending")).scalar() == 0
