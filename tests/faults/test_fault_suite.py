"""A bad night, fault by fault: each test injects one fault for real into the last night of the
reference run (a process killed, a connection cut, VSA misbehaving, a landing damaged, two runs
meeting), recovers the way docs/runbook.md says, and compares the whole warehouse with the
undisturbed run: snapshots, unit changes and their agents, invoices, review, sync_runs, outbox.
Every output is scanned for secrets.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid

import pytest
from sqlalchemy import text

from agent_billing.connections import parse_connection
from agent_billing.warehouse import connect_warehouse
from vsa_simulator import FaultConfig

from .conftest import (
    NIGHTS,
    Operator,
    Reference,
    assert_no_secrets,
    assert_recovered,
    kill,
    wait_until,
)

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
    night = reference.night.isoformat()
    assert re.search(  # what to do is on the same line
        rf"no response within 0\.5s \(host [^)]+\); snapshot {night} is failed; re-run it once VSA answers "
        rf"\(agent-billing sync --date {night}\)$", one_line_error(run))
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


# -- posted history under re-runs --------------------------------------------------------------


def _previous_night(reference: Reference):
    from datetime import timedelta

    return reference.night - timedelta(days=1)


def _contents_without_alerts(op: Operator):
    from .conftest import _without_alerts, warehouse_contents

    return _without_alerts(warehouse_contents(op.engine))[0]


def _rewrite_landing_file(folder, name: str, keep: int) -> None:
    """Cut a landed file to its first ``keep`` records and make the manifest agree with it
    (checksums) while it still claims the original record count: a consistent-looking,
    short landing."""
    import gzip
    import hashlib

    path = folder / name
    lines = gzip.decompress(path.read_bytes()).decode().splitlines(keepends=True)[:keep]
    path.write_bytes(gzip.compress("".join(lines).encode()))
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][name]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True))


@pytest.mark.parametrize("damage", ["missing", "tampered", "short"])
def test_a_complete_night_is_never_rewritten_by_a_rerun(operator, reference, simulator, damage):
    """Re-running a complete night whose landing is gone, tampered with, or cut short (with a
    manifest made to agree) changes nothing: the night stays complete with its data, the run
    fails with one line naming the landing, and the data team is alerted. VSA's present state
    is never taken for the old night."""
    import shutil

    night = _previous_night(reference)
    folder = operator.raw / night.isoformat()
    before = _contents_without_alerts(operator)
    if damage == "missing":
        shutil.rmtree(folder)
    elif damage == "tampered":
        import gzip

        (folder / "orgs.jsonl.gz").write_bytes(gzip.compress(b'{"OrgId": "1", "OrgName": "x"}\n'))
    else:
        _rewrite_landing_file(folder, "agents.jsonl.gz", keep=10)
    simulator.set_date(reference.night)  # VSA has moved on: its present state is not the night's
    run = operator.run("sync", "--date", night.isoformat())
    error = one_line_error(run)
    assert str(folder) in error
    assert _contents_without_alerts(operator) == before
    with operator.engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM sync_runs WHERE snapshot_date = :d"),
                            {"d": night}).scalar() == "complete"
    step = "load" if damage == "short" else "extract"  # extract checks an existing landing's checksums
    night_and_bill(operator, reference)
    assert_recovered(operator, reference, alerts=(f"failure:{night}:{step}",))


def test_a_short_landing_of_a_new_night_fails_its_gate_then_is_landed_again(operator, reference, simulator):
    """A new night's landing with fewer agents than its manifest claims (checksums agree) fails
    the quality gate: nothing is counted or billed. Following the runbook (move the landing
    away, re-run), the night lands again and ends as the undisturbed run."""
    import shutil

    from agent_billing.settings import Settings
    from agent_billing.sync.pipeline import extract_step
    from agent_billing.vsa.client import VsaClient

    simulator.set_date(reference.night)
    extract_step(operator.engine, Settings(raw_path=operator.raw, late_observation="allow"), reference.night,
                 lambda: VsaClient.from_connection(parse_connection("vsa_default", simulator.connection_json())))
    folder = operator.raw / reference.night.isoformat()
    _rewrite_landing_file(folder, "agents.jsonl.gz", keep=50)
    run = operator.run("sync", "--date", reference.night.isoformat())
    assert "quality gate failed" in one_line_error(run)
    with operator.engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM sync_runs WHERE snapshot_date = :d"),
                            {"d": reference.night}).scalar() == "failed"
        assert not conn.execute(text("SELECT COUNT(*) FROM service_unit_counts WHERE snapshot_date = :d"),
                                {"d": reference.night}).scalar()
    shutil.rmtree(folder)
    night_and_bill(operator, reference)
    assert_recovered(operator, reference, alerts=(f"quality:{reference.night}",))


# -- runs meeting each other -------------------------------------------------------------------


def test_two_runs_of_one_night_held_at_the_load_both_end_as_one(operator, reference, simulator):
    """Two syncs of the same night (a retry and a backfill) race for the landing and meet at
    the load, held there by another transaction; released, they load one after the other:
    no doubled rows, both succeed, the warehouse equals the undisturbed run."""
    from agent_billing.sync.load import SNAPSHOT_TABLES

    simulator.set_date(reference.night)
    conn, trans = _hold_tables(operator, list(SNAPSHOT_TABLES))
    try:
        first = operator.start("sync", "--date", reference.night.isoformat())
        second = operator.start("sync", "--date", reference.night.isoformat())
        wait_until("the landing", lambda: (operator.raw / reference.night.isoformat() / "manifest.json").exists())
        wait_until("a load to wait for the held tables", lambda: _waiting_on_a_lock(operator), timeout=120)
    finally:
        trans.rollback()
        conn.close()
    runs = [operator.finish(first), operator.finish(second)]
    assert [r.returncode for r in runs] == [0, 0], "\n".join(r.stderr for r in runs if r.returncode)
    assert operator.bill(reference.night).returncode == 0
    assert_recovered(operator, reference)


@ON_POSTGRES
def test_the_next_night_runs_while_a_night_reloads(operator, reference, simulator):
    """A re-run of night D is held at its load (the date's lock, taken by another session)
    while night D+1 syncs and bills: D+1 derives against D's complete data, never a half
    load; D's re-run then completes; no customer gets a wrong or extra mail."""
    from agent_billing.sync.runs import SNAPSHOT_DATE_LOCK

    night = _previous_night(reference)
    holder = operator.engine.connect()
    holder.execute(text("SELECT pg_advisory_lock(CAST(:k AS integer), CAST(:d AS integer))"),
                   {"k": SNAPSHOT_DATE_LOCK % 2**31, "d": night.toordinal()})
    try:
        rerun = operator.start("sync", "--date", night.isoformat())
        wait_until("the re-run to wait for its date", lambda: _waiting_on_advisory_lock(operator), timeout=120)
        night_and_bill(operator, reference)
        assert rerun.poll() is None  # still held
    finally:
        holder.execute(text("SELECT pg_advisory_unlock_all()"))
        holder.close()
    assert operator.finish(rerun).returncode == 0
    assert_recovered(operator, reference)


def _waiting_on_advisory_lock(op: Operator) -> bool:
    with op.engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND wait_event = 'advisory'")).scalar())


def test_a_backfill_running_nights_at_once_ends_as_one_at_a_time(operator, reference, simulator):
    """A backfill with several runs at once (`airflow backfill create --max-active-runs 3`
    --reprocess-behavior completed): the two earlier nights are re-run while the last one is
    synced for the first time, all at once; the warehouse ends exactly as the night-by-night
    run's. (The simulator serves the last night; the earlier ones reuse their landings.)"""
    from .conftest import NIGHTS

    simulator.set_date(reference.night)
    processes = [operator.start("sync", "--date", night.isoformat()) for night in NIGHTS]
    runs = [operator.finish(p) for p in processes]
    assert [r.returncode for r in runs] == [0] * len(NIGHTS), [r.stderr for r in runs]
    for night in NIGHTS:
        assert operator.bill(night).returncode == 0
    assert_recovered(operator, reference)


# -- a warehouse lost ----------------------------------------------------------------------------


def test_an_older_backup_restored_and_replayed_gives_the_invoices_sent(reference, simulator, tmp_path):
    """docs/deployment.md, "Restore": a backup from before the nights (the invoices of the first
    night were posted after it), the landings kept, and the nights replayed one by one as the
    nightly runs went, each synced from its landing and billed (``sync --bill``): the warehouse
    is the one that was lost, invoices included. VSA is not called: every night reuses its landing."""
    shutil.copytree(reference.all_raw, tmp_path / "raw")
    url = reference.warehouses.restore(f"ab_fault_restored_{uuid.uuid4().hex[:10]}", reference.before_nights, tmp_path)
    op = Operator(url, tmp_path / "raw", simulator, connect_warehouse(url))
    try:
        simulator.set_faults(FaultConfig(seed=1, rate_5xx=1.0))  # a call to VSA would fail the night
        for day in NIGHTS:
            simulator.set_date(day)
            run = op.run("sync", "--date", day.isoformat(), "--bill")
            assert run.returncode == 0 and '"reused"' in run.stdout, run.output
            assert f"billed 3 contract(s) as of {day}: " in run.stdout, run.output
        assert_recovered(op, reference)
    finally:
        op.engine.dispose()
