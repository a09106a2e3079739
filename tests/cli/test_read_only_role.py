"""Finance's read-only role (docs/deployment.md, 3.1) running a command that writes gets one
line naming the role's permission and exit 2, never a driver error with its SQL, and a billing
run stops at its first contract (the role, not the contracts, is wrong)."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from agent_billing.warehouse import connect_warehouse

from .conftest import BILLED_ON, run_cli, warehouse_contents


@pytest.fixture
def read_only_url(seeded):
    role = f"ab_ro_{uuid.uuid4().hex[:8]}"
    owner = connect_warehouse(seeded, isolation_level="AUTOCOMMIT")
    database = make_url(seeded).database
    with owner.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(text(f'GRANT CONNECT ON DATABASE "{database}" TO {role}'))
        conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {role}"))
        conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
    yield make_url(seeded).set(username=role, password=None).render_as_string(hide_password=False)
    with owner.connect() as conn:
        conn.execute(text(f"DROP OWNED BY {role}"))
        conn.execute(text(f"DROP ROLE {role}"))
    owner.dispose()


@pytest.mark.parametrize("warehouse_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("argv", [
    ("bill", "--as-of", str(BILLED_ON), "--dry-run"),
    ("bill", "--as-of", str(BILLED_ON)),
    ("contracts", "apply", "{file}"),
], ids=["bill-dry-run", "bill", "contracts"])
def test_a_read_only_role_is_told_in_one_line(read_only_url, seeded, argv, tmp_path):
    contracts = tmp_path / "contracts.yaml"
    contracts.write_text(json.dumps({"accounts": [{"account_id": "NEW", "name": "New Ltd"}]}))
    before = warehouse_contents(seeded)
    run = run_cli(*(a.format(file=contracts) for a in argv), env={"AIRFLOW_CONN_BILLING_WAREHOUSE": read_only_url})
    assert run.code == 2, run.stderr
    [line] = run.stderr_lines
    command = " ".join(a for a in argv[:2] if not a.startswith("-"))  # bill, contracts apply
    assert line.startswith(f"agent-billing {command}: error: the warehouse role may not do this: permission denied for ")
    assert "SELECT" not in line and "INSERT" not in line and "UPDATE" not in line
    assert warehouse_contents(seeded) == before


@pytest.mark.parametrize("warehouse_url", ["postgresql"], indirect=True)
def test_a_read_only_role_reads_and_previews_invoices(read_only_url, seeded):
    """What finance runs with its role: listing, showing, exporting and previewing."""
    for argv in (("invoices", "list", "--month", "2025-01"), ("invoices", "show", "INV-C-FABRIKAM-2025-01"),
                 ("invoices", "export", "--month", "2025-01"), ("invoices", "preview", "--contract", "C-FABRIKAM")):
        run = run_cli(*argv, env={"AIRFLOW_CONN_BILLING_WAREHOUSE": read_only_url})
        assert (run.code, run.stderr) == (0, ""), argv
        assert "C-FABRIKAM" in run.stdout, argv
