"""The quality gate on a loaded snapshot, on SQLite and PostgreSQL: a good night passes and its
results are stored; each broken rule fails with its own message; a landing that does not match
what was loaded (short file, server count differs) fails; the gate is quiet and lazily imported."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import subprocess
import sys
import time

import pytest
from sqlalchemy import text

from agent_billing.errors import ConfigurationError
from agent_billing.quality.snapshot_gate import QualityGateFailed
from agent_billing.settings import Settings, get_settings
from agent_billing.sync.pipeline import load_step, validate_step

from ..sync.conftest import AGENT, DAYS, G_SRV, ORG, VIEW, write_landing

D1 = min(DAYS)


@pytest.fixture
def settings(tmp_path):
    return Settings(raw_path=tmp_path / "raw", data_team_emails="data@msp.example")


def land_and_load(engine, settings, mutate=None):
    landing = write_landing(settings.raw_path, D1, *DAYS[D1], mutate=mutate)
    load_step(engine, settings, D1)
    return landing


def gate_failure(engine, settings) -> str:
    with pytest.raises(QualityGateFailed) as info:
        validate_step(engine, settings, D1)
    return str(info.value)


def stored_results(engine) -> dict[str, tuple]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT expectation, success, element_count, unexpected_count, details "
                 "FROM quality_results WHERE snapshot_date = :d"), {"d": D1}
        ).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def sync_run(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT status, message FROM sync_runs")).one()


def test_a_good_snapshot_passes_and_its_results_are_stored(warehouse, settings):
    land_and_load(warehouse, settings)
    result = validate_step(warehouse, settings, D1)
    assert result.status == "validated" and result.detail["expectations"] == 9
    results = stored_results(warehouse)
    assert len(results) == 9 and all(r[0] for r in results.values())
    assert results["agents.expect_column_values_to_be_unique(agent_id)"][1:3] == (6, 0)
    # five landed files: orgs, groups, agents, views, one view's members
    assert results["endpoints.expect_column_pair_values_to_be_equal(loaded, records)"][1:3] == (5, 0)


def test_a_passing_night_stores_what_a_full_check_would(warehouse, settings, monkeypatch):
    """A passing night is checked for verdicts only (GX skips its counts and samples); what it
    stores is what the full check (counts, samples) of the same night stores."""
    from agent_billing.quality import snapshot_gate

    land_and_load(warehouse, settings)
    validate_step(warehouse, settings, D1)
    verdicts_only = stored_results(warehouse)
    validate = snapshot_gate._validate
    formats, full = [], {}

    def full_check(context, batch, table, expectations, d, result_format, *args, **kwargs):
        formats.append(result_format)
        if table != "agents":
            return validate(context, batch, table, expectations, d, result_format, *args, **kwargs)
        results = validate(context, batch, table, expectations, d, "SUMMARY", *args, **kwargs)
        full.update({r.expectation: (r.success, r.element_count, r.unexpected_count, r.details) for r in results})
        return results

    monkeypatch.setattr(snapshot_gate, "_validate", full_check)
    validate_step(warehouse, settings, D1)
    assert formats[0] == "BOOLEAN_ONLY" and len(full) == 6
    assert full == {name: row for name, row in verdicts_only.items() if name.startswith("agents.")}


def test_each_broken_agent_rule_fails_with_its_message(warehouse, settings):
    def break_snapshot(records):
        agents = records["agents.jsonl.gz"]
        agents.append(dict(agents[0]))                                 # a duplicate agent id
        agents[1]["MachineGroupId"] = "99999999999999999999999999"     # an unknown group
        agents[2]["Online"] = 7                                        # not a VSA status code
        del agents[3]["Online"]                                        # no status at all
        agents[4]["OrgId"] = "11111111111111111111111111"              # not its group's org
        agents[5]["AgentId"] = None                                    # no id

    land_and_load(warehouse, settings, break_snapshot)
    message = gate_failure(warehouse, settings)
    assert message.startswith("quality gate failed for snapshot 2024-03-01: ")
    for failure in (
        "agents.expect_column_values_to_not_be_null(agent_id) failed on 1 of 7 rows",
        "agents.expect_column_values_to_be_unique(agent_id) failed on 2 of 7 rows",
        "agents.expect_column_values_to_be_in_set(group_known) failed on 1 of 7 rows",
        "agents.expect_column_pair_values_to_be_equal(org_id, group_org_id) failed on 1 of 7 rows",
        "agents.expect_column_values_to_be_in_set(online) failed on 1 of 7 rows",
        "agents.expect_column_values_to_not_be_null(online) failed on 1 of 7 rows",
    ):
        assert failure in message
    assert "endpoints." not in message  # the landing itself is consistent
    results = stored_results(warehouse)
    assert sorted(k for k, r in results.items() if not r[0]) == sorted([
        "agents.expect_column_values_to_not_be_null(agent_id)",
        "agents.expect_column_values_to_be_unique(agent_id)",
        "agents.expect_column_values_to_be_in_set(group_known)",
        "agents.expect_column_pair_values_to_be_equal(org_id, group_org_id)",
        "agents.expect_column_values_to_be_in_set(online)",
        "agents.expect_column_values_to_not_be_null(online)",
    ])
    [bad_status] = json.loads(results["agents.expect_column_values_to_be_in_set(online)"][3])
    assert bad_status == {"agent_id": bad_status["agent_id"], "online": 7} and bad_status["agent_id"]
    # the message names the agents (where to look), with the value that failed
    assert f"be_in_set(online) failed on 1 of 7 rows (agent {bad_status['agent_id']}: online 7)" in message
    status, stored_message = sync_run(warehouse)
    assert status == "failed" and stored_message == message


def test_a_status_code_a_newer_vsa_added_fails_until_the_data_team_accepts_it(warehouse, settings, monkeypatch):
    """One agent with an undocumented Online code fails the night (naming it); the data team
    checks what it means and accepts it with AGENT_BILLING_EXTRA_ONLINE_CODES, then re-runs."""
    def new_code(records):
        records["agents.jsonl.gz"][1]["Online"] = 3

    land_and_load(warehouse, settings, new_code)
    assert f"be_in_set(online) failed on 1 of 6 rows (agent {AGENT['a2']}: online 3)" in gate_failure(warehouse, settings)
    monkeypatch.setenv("AGENT_BILLING_EXTRA_ONLINE_CODES", " 3, 14")
    accepting = get_settings().model_copy(update={"raw_path": settings.raw_path})
    assert accepting.online_codes_added == (3, 14)
    assert validate_step(warehouse, accepting, D1).status == "validated"
    monkeypatch.setenv("AGENT_BILLING_EXTRA_ONLINE_CODES", "3;14")
    with pytest.raises(ConfigurationError, match=r"AGENT_BILLING_EXTRA_ONLINE_CODES='3;14': '3;14' is not a status code"):
        get_settings()


def test_an_agent_in_a_group_of_another_org_fails(warehouse, settings):
    def move_group(records):
        group = next(g for g in records["machine_groups.jsonl.gz"] if g["MachineGroupId"] == G_SRV)
        group["OrgId"] = "11111111111111111111111111"

    land_and_load(warehouse, settings, move_group)
    message = gate_failure(warehouse, settings)
    # a4 and a5 sit in the servers group, which now belongs to another org
    assert message == (
        "quality gate failed for snapshot 2024-03-01: agents.expect_column_pair_values_to_be_equal"
        f"(org_id, group_org_id) failed on 2 of 6 rows (agent {AGENT['a4']}: org_id {ORG}, group_org_id "
        f"11111111111111111111111111; agent {AGENT['a5']}: org_id {ORG}, group_org_id 11111111111111111111111111)"
    )


def rewrite_short(landing, name: str, keep: int) -> None:
    """Truncate a landed file to its first ``keep`` lines and give the manifest its new checksum,
    so the landing verifies (a consistent-looking but short landing); its record count stays."""
    path = landing.path / name
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        lines = fh.readlines()[:keep]
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(lines)
    manifest = json.loads((landing.path / "manifest.json").read_text())
    manifest["files"][name]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (landing.path / "manifest.json").write_text(json.dumps(manifest))


def test_a_short_landing_fails_the_gate(warehouse, settings):
    landing = write_landing(settings.raw_path, D1, *DAYS[D1])
    rewrite_short(landing, "agents.jsonl.gz", keep=4)
    rewrite_short(landing, f"agents_in_view/{VIEW}.jsonl.gz", keep=1)
    load_step(warehouse, settings, D1)  # the checksums match: the load accepts it
    message = gate_failure(warehouse, settings)
    assert message == (
        "quality gate failed for snapshot 2024-03-01: endpoints.expect_column_pair_values_to_be_equal"
        f"(loaded, records) failed on 2 of 5 rows (agents.jsonl.gz; agents_in_view/{VIEW}.jsonl.gz)"
    )
    details = json.loads(stored_results(warehouse)[
        "endpoints.expect_column_pair_values_to_be_equal(loaded, records)"][3])
    assert {"file": "agents.jsonl.gz", "loaded": 4, "records": 6} in details
    assert sync_run(warehouse)[0] == "failed"


def test_a_manifest_short_of_the_servers_total_fails_the_gate(warehouse, settings):
    landing = land_and_load(warehouse, settings)
    manifest = json.loads((landing.path / "manifest.json").read_text())
    manifest["files"]["agents.jsonl.gz"]["total_records"] = 16  # VSA said 16, 6 were extracted
    (landing.path / "manifest.json").write_text(json.dumps(manifest))
    message = gate_failure(warehouse, settings)
    assert message == (
        "quality gate failed for snapshot 2024-03-01: endpoints.expect_column_pair_values_to_be_equal"
        "(records, total_records) failed on 1 of 5 rows (agents.jsonl.gz)"
    )


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_the_gate_prints_nothing_and_logs_no_gx_chatter(warehouse, settings, capfd, caplog):
    land_and_load(warehouse, settings)
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    capfd.readouterr()
    validate_step(warehouse, settings, D1)
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # no tqdm bars on stderr
    assert [r.getMessage() for r in caplog.records if r.name.startswith("great_expectations")] == []
    assert [r.getMessage() for r in caplog.records if r.name.startswith("agent_billing")] == [
        "quality gate passed for 2024-03-01: 9 expectations on 6 agents"
    ]


def test_the_sync_package_does_not_import_great_expectations():
    code = (
        "import sys, agent_billing.sync.pipeline, agent_billing.quality.snapshot_gate; "
        "print('great_expectations' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False"


@pytest.mark.parametrize("warehouse_url", ["postgresql"], indirect=True)
def test_the_warehouse_password_stays_out_of_the_gx_connection_string(warehouse_url):
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from agent_billing.quality.gx_context import dispose, quiet_context, warehouse_source

    url = make_url(warehouse_url)  # the test server trusts local connections: any password works
    engine = create_engine(url.set(password="s3cr/t"))
    source = warehouse_source(quiet_context(), "w", engine)  # GX connects to test it
    dispose(source)
    assert "s3cr" not in str(source.connection_string)
    assert str(source.connection_string) == warehouse_url  # the test URL has no password


@pytest.mark.parametrize("warehouse_url", ["postgresql"], indirect=True)
def test_two_gates_of_one_date_store_their_results_one_after_the_other(warehouse, settings):
    """A retry and a backfill of one night run their gates at the same time: the second stores
    its results once the first has committed, replacing them, instead of colliding on the key
    (a failed gate, and a failed run, for a good night)."""
    import threading

    from agent_billing.quality.snapshot_gate import store_results, validate_snapshot
    from agent_billing.sync.landing import RawLanding

    land_and_load(warehouse, settings)
    landing = RawLanding(settings.raw_path, D1)
    results = validate_snapshot(warehouse, landing)
    outcome: dict[str, object] = {}

    def second_gate():
        try:
            outcome["results"] = validate_snapshot(warehouse, landing)
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = exc

    with warehouse.begin() as first:
        store_results(first, D1, results)  # the first gate's store, not yet committed
        second = threading.Thread(target=second_gate)
        second.start()
        deadline = time.monotonic() + 120
        while not _a_session_waits_on_a_lock(warehouse):
            assert second.is_alive() and time.monotonic() < deadline, outcome
            time.sleep(0.05)
    second.join(timeout=120)
    assert "error" not in outcome, outcome
    assert len(stored_results(warehouse)) == len(results) == 9


def _a_session_waits_on_a_lock(engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar())


@pytest.mark.parametrize("warehouse_url", ["postgresql"], indirect=True)
def test_the_gate_reads_the_night_with_the_bulk_settings(warehouse_url):
    """GX's own connections get the settings of the pipeline's bulk transactions (no JIT, room
    to hash a night in memory), or its checks of a million agents plan as small queries."""
    from sqlalchemy import create_engine

    from agent_billing.quality.gx_context import dispose, quiet_context, warehouse_source
    from agent_billing.warehouse.bulk import BULK_SETTINGS

    source = warehouse_source(quiet_context(), "w", create_engine(warehouse_url))
    try:
        with source.get_execution_engine().engine.connect() as conn:
            shown = {name: conn.execute(text(f"SHOW {name}")).scalar() for name in BULK_SETTINGS}
    finally:
        dispose(source)
    assert shown == BULK_SETTINGS
