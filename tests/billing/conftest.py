"""Billing scenarios on a real warehouse (SQLite and PostgreSQL): contracts through
``apply_contracts``, counts and unit changes inserted as the nightly sync writes them, and the
posted ledger read back for assertions. Tests get it as the ``books`` fixture."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text

from agent_billing.billing import run_billing
from agent_billing.billing.store import typed_select
from agent_billing.contracts import apply_contracts

ROOT = Path(__file__).resolve().parents[2]
ORG = "73511820644390182275501461"
GROUP = "73511820644390182275501462"


def d(value: str) -> date:
    return date.fromisoformat(value)


def cents(value: Decimal | str) -> Decimal:
    return Decimal(value).quantize(Decimal("0.01"))


class Books:
    """Set up contracts and unit history, run billing, read invoices and pending lines."""

    d = staticmethod(d)

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def contract(
        self, contract_id: str, services: list[dict], *, start: str, currency: str = "USD", **more
    ) -> None:
        contract = {"contract_id": contract_id, "currency": currency, "start_date": start,
                    "services": services, **more}
        apply_contracts(self.engine, {"accounts": [{
            "account_id": f"A-{contract_id}", "name": f"Account {contract_id}", "vsa_org_id": ORG,
            "contracts": [contract],
        }]})
        # This ledger's nights have no landings: a service counts what the test writes, and a
        # night without its count carries its units. None is left to recount (tests of that
        # hold write nights_to_recount themselves; tests/sync drives it from real landings).
        self._exec("DELETE FROM nights_to_recount WHERE service_id IN "
                   "(SELECT service_id FROM services WHERE contract_id = :c)", c=contract_id)

    def service(self, contract_id: str, service: dict, *, start: str, **more) -> None:
        """Re-apply a one-service contract with ``service`` changed (e.g. a new end date)."""
        self.contract(contract_id, [service], start=start, **more)

    @staticmethod
    def rmm(service_id: str, price: str, start: str, **more) -> dict:
        return {"service_id": service_id, "name": f"Agents {service_id}", "unit_price": price,
                "units_source": "rmm_agent_count", "vsa_machine_group_id": GROUP,
                "start_date": start, **more}

    def concluded(self, day: str, status: str = "complete") -> None:
        """The nightly sync of ``day`` concluded (within the billing horizon from then on)."""
        self._exec(
            "INSERT INTO sync_runs (snapshot_date, status) SELECT :d, :status "
            "WHERE NOT EXISTS (SELECT 1 FROM sync_runs WHERE snapshot_date = :d)",
            d=d(day), status=status,
        )

    def auto_and_review(self) -> None:
        """C-AUTO (S-WS, 10 units at 12.00) and C-REVIEW (posting review; S-SRV, 2 at 40.00),
        both from March 2024, counted on March 1st: the pair the CLI tests bill."""
        self.contract("C-AUTO", [self.rmm("S-WS", "12.00", "2024-03-01")], start="2024-03-01")
        self.contract("C-REVIEW", [self.rmm("S-SRV", "40.00", "2024-03-01")], start="2024-03-01",
                      posting="review")
        self.count("S-WS", "2024-03-01", 10)
        self.count("S-SRV", "2024-03-01", 2)

    def count(self, service_id: str, day: str, units: int) -> None:
        """A count of a good (complete) snapshot, as the nightly sync leaves it."""
        self.concluded(day)
        self._exec(
            "INSERT INTO service_unit_counts (service_id, snapshot_date, units) VALUES (:s, :d, :u)",
            s=service_id, d=d(day), u=units,
        )

    def change(
        self, service_id: str, day: str, before: int, after: int, source: str = "nightly_sync"
    ) -> str:
        change_id = f"{service_id}:{day}:{source}"
        self._exec(
            "INSERT INTO unit_changes (change_id, service_id, effective_date, units_before, "
            "units_after, delta, source) VALUES (:c, :s, :d, :b, :a, :delta, :src)",
            c=change_id, s=service_id, d=d(day), b=before, a=after, delta=after - before, src=source,
        )
        return change_id

    def rewrite(self, change_id: str, before: int, after: int) -> None:
        self._exec(
            "UPDATE unit_changes SET units_before = :b, units_after = :a, delta = :d "
            "WHERE change_id = :c",
            c=change_id, b=before, a=after, d=after - before,
        )

    def delete(self, change_id: str) -> None:
        self._exec("DELETE FROM unit_changes WHERE change_id = :c", c=change_id)

    def bill(self, as_of: str, **kwargs):
        """Bill as the nightly run after ``as_of``'s sync does; any failed contract fails it."""
        self.concluded(as_of)
        summary = run_billing(self.engine, d(as_of), **kwargs)
        summary.raise_for_failures()
        return summary

    def invoices(self) -> dict[str, dict]:
        """Posted invoices by id, each with its lines."""
        heads = self._rows("SELECT * FROM invoices")
        lines = self._rows("SELECT * FROM invoice_lines ORDER BY service_id, period_start, line_key")
        out = {h["invoice_id"]: {**h, "lines": []} for h in heads}
        for line in lines:
            out[line["invoice_id"]]["lines"].append(line)
        return out

    def invoice(self, invoice_id: str) -> dict:
        return self.invoices()[invoice_id]

    def lines(self) -> list[dict]:
        return self._rows("SELECT * FROM invoice_lines ORDER BY service_id, period_start, line_key")

    def pending(self, contract_id: str | None = None) -> list[dict]:
        rows = self._rows("SELECT * FROM billing_review ORDER BY service_id, period_start, line_id")
        return [r for r in rows if contract_id in (None, r["contract_id"])]

    @staticmethod
    def amounts(lines: list[dict]) -> list[tuple[str, Decimal]]:
        """Sorted (kind, amount to the cent) of lines, to compare with the SPEC's figures."""
        return sorted((x["kind"], cents(x["amount"])) for x in lines)

    def _rows(self, sql: str) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(typed_select(text(sql))).mappings()]

    def _exec(self, sql: str, **params) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(sql), params)


@pytest.fixture
def books(warehouse) -> Books:
    return Books(warehouse)


def warehouse_contents(engine: Engine) -> dict[str, list[tuple]]:
    """Every row of every table and view, sorted: equal before and after means nothing changed."""
    names = inspect(engine).get_table_names() + ["billing_review"]
    with engine.connect() as conn:
        return {
            name: sorted((tuple(r) for r in conn.execute(text(f"SELECT * FROM {name}"))), key=repr)
            for name in names
        }


@pytest.fixture
def agent_billing_cli(warehouse):
    """Run the real command line ``python -m agent_billing.cli ARGS`` on the test warehouse
    (``AIRFLOW_CONN_BILLING_WAREHOUSE``, set by the ``warehouse`` fixture) -> CompletedProcess."""

    def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        environ = {**os.environ, "PYTHONPATH": str(ROOT / "include"), **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "agent_billing.cli", *args],
            capture_output=True, text=True, env=environ, timeout=120, check=False,
        )

    return run


_INFO_LOG = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO) ")


def one_line_error(process: subprocess.CompletedProcess) -> str:
    """The single stderr line of a refused command (asserting there is exactly one). INFO log
    lines are not counted: Alembic announces its plugins at import until the CLI is quiet."""
    lines = [x for x in process.stderr.strip().splitlines() if not _INFO_LOG.match(x)]
    assert len(lines) == 1 and "Traceback" not in process.stderr, process.stderr
    return lines[0]


@pytest.fixture
def corrected(books):
    """April's lines corrected on May's invoice (a backfill found one more agent on Mar 15)."""
    books.contract("C", [books.rmm("S", "12.00", "2024-03-01")], start="2024-03-01")
    books.count("S", "2024-03-01", 10)
    books.bill("2024-03-01")
    change_id = books.change("S", "2024-03-15", 10, 11)
    books.bill("2024-04-01")
    books.rewrite(change_id, 10, 12)
    books.bill("2024-05-01")
    return books
