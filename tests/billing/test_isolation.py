"""SPEC §5 "Isolation": a contract that fails is rolled back, listed and alerted; the others
are billed; the run (and the command, exit 1) fails afterwards."""

from __future__ import annotations

import json
from datetime import date

import pytest
from sqlalchemy import text
from tests.billing.conftest import one_line_error, warehouse_contents

from agent_billing.billing import BillingRunFailed, run_billing
from agent_billing.errors import UserError

D = date.fromisoformat
DATA_TEAM = "data@example.com,oncall@example.com"


def make_contract_fail(engine, contract_id: str) -> None:
    """A trigger refusing the contract's invoice lines, as a broken constraint would."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(
                "CREATE FUNCTION refuse_lines() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.contract_id = '{contract_id}' THEN "
                "RAISE EXCEPTION 'lines of % refused by test trigger', NEW.contract_id; END IF; "
                "RETURN NEW; END; $$ LANGUAGE plpgsql"))
            conn.execute(text("CREATE TRIGGER refuse_lines BEFORE INSERT ON invoice_lines "
                              "FOR EACH ROW EXECUTE FUNCTION refuse_lines()"))
        else:
            conn.execute(text(
                "CREATE TRIGGER refuse_lines BEFORE INSERT ON invoice_lines "
                f"FOR EACH ROW WHEN NEW.contract_id = '{contract_id}' "
                "BEGIN SELECT RAISE(ABORT, 'lines of C-BAD refused by test trigger'); END"))


def repair(engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER refuse_lines"
                          + (" ON invoice_lines" if engine.dialect.name == "postgresql" else "")))


@pytest.fixture
def three(books, monkeypatch):
    monkeypatch.setenv("AGENT_BILLING_DATA_TEAM_EMAILS", DATA_TEAM)
    for cid in ("C-A", "C-BAD", "C-Z"):
        books.contract(cid, [books.rmm(f"S-{cid}", "10.00", "2024-03-01")], start="2024-03-01")
        books.count(f"S-{cid}", "2024-03-01", 3)
    make_contract_fail(books.engine, "C-BAD")
    return books


def outbox(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(
            "SELECT message_id, kind, recipients, subject, body FROM notification_outbox "
            "ORDER BY message_id")).mappings()]


def test_one_failing_contract_does_not_block_the_others(three):
    summary = run_billing(three.engine, D("2024-03-01"))

    assert sorted(three.invoices()) == ["INV-C-A-2024-03", "INV-C-Z-2024-03"]
    assert [c.contract_id for c in summary.contracts] == ["C-A", "C-Z"]
    [failed] = summary.failed
    assert failed.contract_id == "C-BAD"
    assert "lines of C-BAD refused by test trigger" in failed.error
    assert "\n" not in failed.error and "Traceback" not in failed.error and "INSERT" not in failed.error
    with three.engine.connect() as conn:  # rolled back: not even its invoice run is recorded
        cycles = conn.execute(text("SELECT contract_id FROM billing_cycles ORDER BY 1")).scalars().all()
    assert cycles == ["C-A", "C-Z"]

    [alert] = outbox(three.engine)
    assert alert["message_id"] == "billing-failure:C-BAD:2024-03-01"
    assert alert["recipients"] == DATA_TEAM and "C-BAD" in alert["subject"]
    assert failed.error in alert["body"]

    xcom = summary.to_xcom()
    assert json.loads(json.dumps(xcom)) == {
        "as_of": "2024-03-01", "contracts": 2, "invoices_posted": 2, "lines_posted": 2,
        "pending_lines": 0, "failed": [{"contract_id": "C-BAD", "error": failed.error}],
    }
    with pytest.raises(BillingRunFailed, match=r"failed for 1 contract\(s\).*C-BAD") as raised:
        summary.raise_for_failures()
    assert isinstance(raised.value, UserError) and raised.value.exit_code == 1

    # Running again alerts once (same message id); once repaired, the contract is billed.
    assert run_billing(three.engine, D("2024-03-01")).failed[0].contract_id == "C-BAD"
    assert len(outbox(three.engine)) == 1
    repair(three.engine)
    again = run_billing(three.engine, D("2024-03-01"))
    assert again.failed == () and again.invoices_posted == 1
    again.raise_for_failures()  # no failures: nothing raised
    assert "INV-C-BAD-2024-03" in three.invoices()


def test_a_dry_run_lists_the_failure_but_alerts_nobody(three):
    before = warehouse_contents(three.engine)
    summary = run_billing(three.engine, D("2024-03-01"), dry_run=True)
    assert [f.contract_id for f in summary.failed] == ["C-BAD"] and summary.invoices_posted == 2
    assert warehouse_contents(three.engine) == before


def test_the_command_prints_the_others_then_fails(three, agent_billing_cli):
    process = agent_billing_cli("bill", "--as-of", "2024-03-01")
    assert process.returncode == 1
    assert "INV-C-A-2024-03" in process.stdout and "INV-C-Z-2024-03" in process.stdout
    [failed_row] = [x for x in process.stdout.splitlines() if x.startswith("C-BAD")]
    assert "refused by test trigger" in failed_row
    assert "Traceback" not in process.stderr
    last = process.stderr.strip().splitlines()[-1]
    assert last.startswith("agent-billing bill: error: billing as of 2024-03-01 failed for 1 "
                           "contract(s), the other 2 billed: C-BAD (")
    assert sorted(three.invoices()) == ["INV-C-A-2024-03", "INV-C-Z-2024-03"]


def test_unknown_contracts_are_refused_before_anything_is_billed(three, agent_billing_cli):
    before = warehouse_contents(three.engine)
    process = agent_billing_cli("bill", "--as-of", "2024-03-01", "--contract", "C-A", "--contract", "NOPE")
    assert (process.returncode, process.stdout) == (2, "")
    assert one_line_error(process) == "agent-billing bill: error: unknown contract(s): NOPE"
    assert warehouse_contents(three.engine) == before


@pytest.mark.parametrize("warehouse_url", ["postgresql"], indirect=True)
def test_a_contract_failing_on_the_database_s_passing_trouble_makes_a_run_worth_retrying(books, monkeypatch):
    """A deadlock (or a lost connection, a lock timeout, a race for the same invoice) is the
    database's passing trouble: the run is failed, and Airflow retries it (billing is
    idempotent; ``run_states.fail_fast`` keeps the retries of a ``transient`` error). A contract
    failing on its data makes the run fail at once."""
    for cid in ("C-A", "C-BAD"):
        books.contract(cid, [books.rmm(f"S-{cid}", "10.00", "2024-03-01")], start="2024-03-01")
        books.count(f"S-{cid}", "2024-03-01", 3)
    with books.engine.begin() as conn:
        conn.execute(text(
            "CREATE FUNCTION deadlock_lines() RETURNS trigger AS $$ BEGIN "
            "IF NEW.contract_id = 'C-BAD' THEN RAISE EXCEPTION 'deadlock detected (test)' "
            "USING ERRCODE = '40P01'; END IF; RETURN NEW; END; $$ LANGUAGE plpgsql"))
        conn.execute(text("CREATE TRIGGER deadlock_lines BEFORE INSERT ON invoice_lines "
                          "FOR EACH ROW EXECUTE FUNCTION deadlock_lines()"))
    summary = run_billing(books.engine, D("2024-03-01"))
    [failed] = summary.failed
    assert failed.transient and "DeadlockDetected" in failed.error
    with pytest.raises(BillingRunFailed) as raised:
        summary.raise_for_failures()
    assert raised.value.transient

    with books.engine.begin() as conn:  # the same contract now fails on its data
        conn.execute(text("DROP TRIGGER deadlock_lines ON invoice_lines"))
    make_contract_fail(books.engine, "C-BAD")
    summary = run_billing(books.engine, D("2024-03-01"))
    assert not summary.failed[0].transient
    with pytest.raises(BillingRunFailed, match="lines of C-BAD refused") as raised:
        summary.raise_for_failures()
    assert not raised.value.transient


def test_an_amount_beyond_the_money_columns_fails_its_contract_naming_the_service(books):
    """A counted service's price × its agents can pass every limit of the contracts file and
    still make a line no money column holds: the contract fails naming the service, before
    anything is written (PostgreSQL would say only "numeric field overflow")."""
    books.contract("C-HUGE", [books.rmm("S-HUGE", "999999999.9999", "2024-03-01")], start="2024-03-01")
    books.contract("C-OK", [books.rmm("S-OK", "10.00", "2024-03-01")], start="2024-03-01")
    books.count("S-HUGE", "2024-03-01", 200_000)
    books.count("S-OK", "2024-03-01", 3)
    summary = run_billing(books.engine, D("2024-03-01"))

    [failed] = summary.failed
    assert failed.contract_id == "C-HUGE" and not failed.transient
    assert "service S-HUGE: its normal line for 2024-03-01 to 2024-03-31 comes to" in failed.error
    limit = {"postgresql": "99,999,999,999,999.9999",
             "sqlite": "99,999,999,999.9999 on SQLite, which keeps 15 significant digits; PostgreSQL holds more"}
    assert f"more than an amount can be ({limit[books.engine.dialect.name]})" in failed.error
    assert sorted(books.invoices()) == ["INV-C-OK-2024-03"]
