"""A bad night, fault by fault: each test injects one fault for real into the last night of the
reference run (a process killed, a connection cut, VSA misbehaving, a landing damaged, two runs
meeting), recovers the way docs/runbook.md says, and compares the whole warehouse with the
undisturbed run: snapshots, unit changes and their agents, invoices, review, sync_runs, outbox.
Every output is scanned for secrets.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from vsa_simulator import FaultConfig

from .conftest import Operator, Reference, assert_no_secrets, assert_recovered, kill, wait_until

pytestmark = pytest.mark.slow

ON_POSTGRES = pytest.mark.parametrize("reference", ["postgresql"], indirect=True)


def one_line_error(run) -> str:
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode != 0, run.output
    assert "Traceback" not in run.stderr, run.stderr
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1, run.stderr
    return errors[0]


def night_and_bill(op: Operator, ref: Reference) -> None:
    assert op.sync(ref.night).returncode == 0, op.outputs[-1]
    assert op.bill(ref.night).returncode == 0, op.outputs[-1]


def staging_folders(op: Operator, ref: Reference) -> list:
    return list(op.raw.glob(f".{ref.night.isoformat()}.*.tmp"))


# -- processes killed --------------------------------------------------------------------------


def test_sigkill_during_extract_then_rerun(operator, reference, simulator):
    simulator.set_faults(FaultConfig(latency_ms=150))  # a slow VSA: the extract takes seconds
    simulator.set_date(reference.night)
    process = operator.start("sync", "--date", reference.night.isoformat())
    wait_until("the extract to stage files", lambda: any(p.rglob("*.gz") for p in staging_folders(operator, reference)))
    kill(process)
    assert not (operator.raw / reference.night.isoformat()).exists()  # nothing half-landed
    simulator.set_faults(FaultConfig())
    night_and_bill(operator, reference)
    assert_recovered(operator, reference)


def _hold_tables(op: Operator, tables: list[str]):
    """Hold the tables from another connection, as a long-running query of someone else
    would: whoever writes them waits (PostgreSQL: an ACCESS EXCLUSIVE lock; SQLite: the
    database write lock)."""
    conn = op.engine.connect()
    trans = conn.begin()
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE"))
    else:
        conn.exec_driver_sql("DELETE FROM sync_runs WHERE 0")  # takes SQLite's write lock
    return conn, trans


def _waiting_on_a_lock(op: Operator) -> bool:
    with op.engine.connect() as conn:
        if conn.dialect.name != "postgresql":
            return True
        return bool(conn.execute(text(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'")).scalar())


def test_sigkill_during_load_then_rerun(operator, reference, simulator):
    from agent_billing.sync.load import SNAPSHOT_TABLES

    simulator.set_date(reference.night)
    conn, trans = _hold_tables(operator, list(SNAPSHOT_TABLES))
    try:
        process = operator.start("sync", "--date", reference.night.isoformat())
        wait_until("the landing", lambda: (operator.raw / reference.night.isoformat() / "manifest.json").exists())
        wait_until("the load to wait for the held tables", lambda: _waiting_on_a_lock(operator))
        kill(process)
    finally:
        trans.rollback()
        conn.close()
    night_and_bill(operator, reference)
    assert_recovered(operator, reference)


@ON_POSTGRES
def test_connection_terminated_mid_load_fails_cleanly_then_rerun(operator, reference, simulator):
    from agent_billing.sync.load import SNAPSHOT_TABLES

    simulator.set_date(reference.night)
    conn, trans = _hold_tables(operator, list(SNAPSHOT_TABLES))
    try:
        process = operator.start("sync", "--date", reference.night.isoformat())
        wait_until("the load to wait for the held tables", lambda: _waiting_on_a_lock(operator), timeout=120)
        with operator.engine.connect() as admin:
            admin.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"))
            admin.commit()
    finally:
        trans.rollback()
        conn.close()
    run = operator.finish(process)
    assert "terminating connection" in one_line_error(run)
    night_and_bill(operator, reference)
    assert_recovered(operator, reference, alerts=(f"failure:{reference.night}:load",))


def test_sigkill_during_billing_then_rerun(operator, reference, simulator):
    assert operator.sync(reference.night).returncode == 0
    conn, trans = _hold_tables(operator, ["invoices", "invoice_lines", "billing_pending"])
    try:
        process = operator.start("bill", "--as-of", reference.night.isoformat())
        wait_until("billing to wait for the held tables", lambda: _waiting_on_a_lock(operator), timeout=120)
        kill(process)
    finally:
        trans.rollback()
        conn.close()
    assert operator.bill(reference.night).returncode == 0
    assert_recovered(operator, reference)


# -- VSA misbehaving ---------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [
    {"rate_429": 0.3, "retry_after": 0},
    {"rate_5xx": 0.3},
    {"error_in_200_rate": 0.2},
    {"malformed_rate": 0.2},
    {"session_expires_after": 2},
], ids=["429", "5xx", "error-in-200", "malformed", "session-expiry"])
def test_vsa_storms_are_ridden_out(operator, reference, simulator, fault):
    simulator.set_faults(FaultConfig(seed=5, **fault))
    night_and_bill(operator, reference)
    assert_recovered(operator, reference)


def test_records_moving_while_paging_land_a_consistent_extract(operator, reference, simulator):
    """An agent appears while the agents are paged: the pass is read again, and the landing
    holds exactly the server's TotalRecords distinct agents."""
    simulator.set_faults(FaultConfig(insert_during_paging=1, insert_count=1))
    assert operator.sync(reference.night).returncode == 0, operator.outputs[-1]
    manifest = json.loads((operator.raw / reference.night.isoformat() / "manifest.json").read_text())
    agents = manifest["files"]["agents.jsonl.gz"]
    assert agents["records"] == agents["total_records"]
    with operator.engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM sync_runs WHERE snapshot_date = :d"),
                            {"d": reference.night}).scalar() == "complete"
    assert_no_secrets(operator)


def test_a_hung_vsa_fails_within_the_deadline_then_rerun(operator, reference, simulator):
    simulator.set_faults(FaultConfig(latency_ms=20_000))
    simulator.set_date(reference.night)
    extra = {"timeout": 0.5, "retry_deadline": 1.5}
    conn = json.loads(operator.env()["AIRFLOW_CONN_VSA_DEFAULT"])
    conn["extra"].update(extra)
    run = operator.run("sync", "--date", reference.night.isoformat(), AIRFLOW_CONN_VSA_DEFAULT=json.dumps(conn))
    assert "no response within 0.5s" in one_line_error(run)
    simulator.set_faults(FaultConfig())
    night_and_bill(operator, reference)
    assert_recovered(operator, reference, alerts=(f"failure:{reference.night}:extract",))


# -- the landing folder ------------------------------------------------------------------------


def test_a_landing_folder_that_cannot_be_written_fails_cleanly(operator, reference, simulator, tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the landing folder should be")
    simulator.set_date(reference.night)
    run = operator.run("sync", "--date", reference.night.isoformat(), AGENT_BILLING_RAW_PATH=str(blocked / "raw"))
    assert str(blocked) in one_line_error(run)
    night_and_bill(operator, reference)
    assert_recovered(operator, reference, alerts=(f"failure:{reference.night}:extract",))
