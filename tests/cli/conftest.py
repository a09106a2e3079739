"""Run ``agent-billing`` as users do (a subprocess) and capture a warehouse's whole contents."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import inspect, text

from agent_billing.billing import run_billing
from agent_billing.contracts import apply_contracts
from agent_billing.warehouse import connect_warehouse

BILLED_ON = date(2025, 1, 15)
CONTRACTS = {"accounts": [{
    "account_id": "FABRIKAM", "name": "Fabrikam Inc",
    "contracts": [{
        "contract_id": "C-FABRIKAM", "currency": "USD", "start_date": "2025-01-01",
        "services": [{"service_id": "S-SUPPORT", "name": "Support block", "unit_price": "99.00",
                      "units_source": "manual", "units": 3, "start_date": "2025-01-01"}],
    }],
}]}


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def stderr_lines(self) -> list[str]:
        return self.stderr.splitlines()


def run_cli(*argv: str, env: dict[str, str | None] | None = None, cwd=None) -> Run:
    """``python -m agent_billing.cli ARGV`` with this interpreter and the inherited PYTHONPATH;
    ``env`` overrides variables (None removes one)."""
    full = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            full.pop(name, None)
        else:
            full[name] = value
    done = subprocess.run([sys.executable, "-m", "agent_billing.cli", *argv], env=full, cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    return Run(done.returncode, done.stdout, done.stderr)


def warehouse_contents(url: str) -> dict[str, list[str]]:
    """Every row of every table (the Alembic revision included), in a stable order."""
    engine = connect_warehouse(url)
    try:
        with engine.connect() as conn:
            tables = sorted(inspect(conn).get_table_names())
            return {
                t: sorted(repr(tuple(r)) for r in conn.execute(text(f'SELECT * FROM "{t}"')))
                for t in tables
            }
    finally:
        engine.dispose()


@pytest.fixture
def seeded(warehouse, warehouse_url):
    """A warehouse with a contract, a concluded sync date and a posted invoice."""
    apply_contracts(warehouse, CONTRACTS)
    with warehouse.begin() as conn:
        conn.execute(
            text("INSERT INTO sync_runs (snapshot_date, status, observed_at, updated_at) "
                 "VALUES (:d, 'complete', :now, :now)"),
            {"d": BILLED_ON, "now": datetime(2025, 1, 15, 2, tzinfo=UTC)},
        )
    summary = run_billing(warehouse, BILLED_ON)
    assert summary.invoices_posted == 1
    return warehouse_url
