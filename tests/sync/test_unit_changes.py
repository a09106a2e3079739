"""Load → quality gate → count → diff over a scripted multi-day world, on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import shutil
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import event, text

from agent_billing.contracts import apply_contracts
from agent_billing.quality.snapshot_gate import QualityGateFailed
from agent_billing.sync.changes import rederive_from
from agent_billing.sync.pipeline import count_step, diff_step, load_step, validate_step

from .conftest import AGENT, CONTRACT, DAYS, G_SRV, G_WS, VIEW, write_landing

D1, D2, D3 = sorted(DAYS)


def run_day(engine, settings, day, *, land=True, validate=False):
    if land:
        write_landing(settings.raw_path, day, *DAYS[day])
    load_step(engine, settings, day)
    if validate:
        validate_step(engine, settings, day)
    count_step(engine, settings, day)
    return diff_step(engine, settings, day)


def quarantine_d2(engine, settings) -> None:
    """D1 runs; D2 lands with one agent of D1's six: the org's drop quarantines it."""
    run_day(engine, settings, D1)
    write_landing(settings.raw_path, D2, {"a1": DAYS[D1][0]["a1"]}, set())
    load_step(engine, settings, D2)
    count_step(engine, settings, D2)
    assert diff_step(engine, settings, D2).status == "quarantined"


def unit_counts(engine):
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT service_id, snapshot_date, units FROM service_unit_counts ORDER BY 1, 2")
        ).all()
    return {(sid, str(d)[:10]): units for sid, d, units in rows}


def ledger(engine):
    """Every unit change with its agents, in a comparable form."""
    with engine.connect() as conn:
        changes = conn.execute(
            text(
                "SELECT change_id, service_id, effective_date, units_before, units_after, delta, source "
                "FROM unit_changes ORDER BY change_id"
            )
        ).all()
        agents = conn.execute(
            text("SELECT change_id, agent_id, agent_name, event FROM unit_change_agents ORDER BY 1, 2")
        ).all()
    return (
        [(c[0], c[1], str(c[2])[:10], c[3], c[4], c[5], c[6]) for c in changes],
        [tuple(a) for a in agents],
    )


def test_multi_day_changes_and_the_agents_behind_them(contoso, settings):
    for day in (D1, D2, D3):
        result = run_day(contoso, settings, day)
        assert result.status == "complete"

    counts = unit_counts(contoso)
    # S-WS counts its group and the laptops subgroup; S-SRV its group only; S-VIEW the view;
    # S-ORG the whole org without the never-checked-in agent.
    assert [counts[(s, str(D1))] for s in ("S-WS", "S-SRV", "S-VIEW", "S-ORG")] == [3, 2, 2, 5]
    assert [counts[(s, str(D2))] for s in ("S-WS", "S-SRV", "S-VIEW", "S-ORG")] == [4, 1, 2, 5]
    assert [counts[(s, str(D3))] for s in ("S-WS", "S-SRV", "S-VIEW", "S-ORG")] == [4, 1, 3, 6]

    changes, agents = ledger(contoso)
    assert changes == [
        ("S-ORG:2024-03-03:nightly_sync", "S-ORG", "2024-03-03", 5, 6, 1, "nightly_sync"),
        ("S-SRV:2024-03-02:nightly_sync", "S-SRV", "2024-03-02", 2, 1, -1, "nightly_sync"),
        ("S-VIEW:2024-03-03:nightly_sync", "S-VIEW", "2024-03-03", 2, 3, 1, "nightly_sync"),
        ("S-WS:2024-03-02:nightly_sync", "S-WS", "2024-03-02", 3, 4, 1, "nightly_sync"),
    ]
    events = {(cid.split(":")[0], aid, event) for cid, aid, _, event in agents}
    assert events == {
        ("S-ORG", AGENT["a6"], "moved_in"),      # checked in for the first time
        ("S-SRV", AGENT["a4"], "moved_out"),     # moved to workstations
        ("S-VIEW", AGENT["a3"], "moved_in"),     # joined the view without moving
        ("S-WS", AGENT["a7"], "added"),          # new agent in the subgroup
        ("S-WS", AGENT["a4"], "moved_in"),
        ("S-WS", AGENT["a2"], "removed"),        # deleted in VSA
    }
    names = {aid: name for _, aid, name, _ in agents}
    assert names[AGENT["a7"]] == "a7.laptops.workstations.root.contoso"
    with contoso.connect() as conn:
        units = dict(conn.execute(text("SELECT service_id, units FROM services")).all())
    assert units == {"S-WS": 4, "S-SRV": 1, "S-VIEW": 3, "S-ORG": 6}


def test_rerunning_a_date_changes_nothing(contoso, settings):
    for day in (D1, D2, D3):
        run_day(contoso, settings, day)
    before = (unit_counts(contoso), ledger(contoso))
    run_day(contoso, settings, D2, land=False)  # the landing exists: reprocessed, not re-landed
    run_day(contoso, settings, D2, land=False)
    assert (unit_counts(contoso), ledger(contoso)) == before


def test_a_rerun_rewrites_no_unit_change_nor_agent_row(contoso, settings):
    """A re-derivation writes only what moved: nothing, when nothing did."""
    for day in (D1, D2, D3):
        run_day(contoso, settings, day)
    writes = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")) and "unit_change" in statement:
            writes.append(statement)

    event.listen(contoso, "before_cursor_execute", seen)
    try:
        diff_step(contoso, settings, D2)
    finally:
        event.remove(contoso, "before_cursor_execute", seen)
    assert writes == []


def test_a_re_derivation_repairs_every_stored_row_of_its_window(contoso, settings):
    """Whatever the stored rows of a window say, re-deriving it leaves exactly its derivation."""
    for day in (D1, D2, D3):
        run_day(contoso, settings, day)
    expected = ledger(contoso)
    changes, agents = expected
    kept = next(a for a in agents if a[0].endswith("2024-03-02:nightly_sync"))
    gone = next(c for c in changes if c[2] == "2024-03-03" and c[0] != kept[0])
    altered = next(c for c in changes if c[2] == "2024-03-02" and c[0] not in (kept[0], gone[0]))
    with contoso.begin() as conn:
        conn.execute(text("DELETE FROM unit_change_agents WHERE change_id = :c"), {"c": gone[0]})
        conn.execute(text("DELETE FROM unit_changes WHERE change_id = :c"), {"c": gone[0]})
        conn.execute(
            text("UPDATE unit_changes SET units_after = units_after + 7, delta = delta + 7 WHERE change_id = :c"),
            {"c": altered[0]},
        )
        conn.execute(
            text("UPDATE unit_change_agents SET event = 'moved_in', agent_name = NULL "
                 "WHERE change_id = :c AND agent_id = :a"),
            {"c": kept[0], "a": kept[1]},
        )
        conn.execute(
            text("INSERT INTO unit_change_agents (change_id, agent_id, agent_name, event) VALUES (:c, 'x', 'x', 'added')"),
            {"c": kept[0]},
        )
        conn.execute(  # a reading change the window's observations do not back
            text("INSERT INTO unit_changes (change_id, service_id, effective_date, units_before, units_after, delta, "
                 "source, detected_at) VALUES ('S-WS:2024-03-02:get_units_now', 'S-WS', :d, 1, 2, 1, "
                 "'get_units_now', :at)"),
            {"d": D2, "at": datetime(2024, 3, 2, 20, tzinfo=UTC)},
        )
    with contoso.begin() as conn:
        rederive_from(conn, D2, settings.tz)
    assert ledger(contoso) == expected


def test_backfilling_an_earlier_date_converges(contoso, settings):
    for day in (D1, D2, D3):
        write_landing(settings.raw_path, day, *DAYS[day])
    for day in (D1, D3):
        run_day(contoso, settings, day, land=False)
    # Without D2, D3 is diffed against D1.
    changes, _ = ledger(contoso)
    assert ("S-WS:2024-03-03:nightly_sync", "S-WS", "2024-03-03", 3, 4, 1, "nightly_sync") in changes
    run_day(contoso, settings, D2, land=False)  # the missed night arrives late
    in_order_changes = ledger(contoso)
    assert ("S-WS:2024-03-02:nightly_sync", "S-WS", "2024-03-02", 3, 4, 1, "nightly_sync") in in_order_changes[0]
    assert not any(c[0] == "S-WS:2024-03-03:nightly_sync" for c in in_order_changes[0])


def test_quarantined_drop_holds_changes_until_released(contoso, settings):
    run_day(contoso, settings, D1)
    d2 = date(2024, 3, 2)
    only_one = {"a1": DAYS[D1][0]["a1"]}  # 6 agents -> 1: the integration lost most of the org
    write_landing(settings.raw_path, d2, only_one, set())
    load_step(contoso, settings, d2)
    count_step(contoso, settings, d2)
    result = diff_step(contoso, settings, d2)
    assert result.status == "quarantined"
    assert "6 → 1 agents" in result.detail["message"]
    assert ledger(contoso) == ([], [])
    with contoso.connect() as conn:
        assert conn.execute(text("SELECT status FROM sync_runs WHERE snapshot_date = :d"), {"d": d2}).scalar() == "quarantined"
        assert conn.execute(text("SELECT COUNT(*) FROM notification_outbox WHERE kind = 'quarantine'")).scalar() == 1

    from agent_billing.sync.pipeline import release_snapshot

    release_snapshot(contoso, settings, d2)
    changes, _ = ledger(contoso)
    assert {c[1]: c[5] for c in changes} == {"S-WS": -2, "S-SRV": -2, "S-VIEW": -2, "S-ORG": -4}
    # A re-run of the released date does not quarantine it again.
    assert diff_step(contoso, settings, d2).status == "complete"


def test_discarded_snapshot_is_skipped_by_the_next_diff(contoso, settings):
    from agent_billing.sync.pipeline import discard_snapshot

    quarantine_d2(contoso, settings)
    discard_snapshot(contoso, settings, D2)
    run_day(contoso, settings, D3)
    changes, _ = ledger(contoso)
    # D3 is compared with D1, the previous good snapshot.
    assert ("S-WS:2024-03-03:nightly_sync", "S-WS", "2024-03-03", 3, 4, 1, "nightly_sync") in changes


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_only_a_quarantined_snapshot_can_be_released_or_discarded(contoso, settings):
    from agent_billing.sync.pipeline import SnapshotStatusError, discard_snapshot, release_snapshot

    run_day(contoso, settings, D1)
    before = unit_counts(contoso)
    with pytest.raises(SnapshotStatusError, match=r"2024-03-01 is complete, not quarantined \(no snapshot is quarantined now\); nothing to discard"):
        discard_snapshot(contoso, settings, D1)
    with pytest.raises(SnapshotStatusError, match=r"2024-03-02 is unknown, not quarantined \(no snapshot is quarantined now\); nothing to release"):
        release_snapshot(contoso, settings, D2)
    assert unit_counts(contoso) == before


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_quality_failure_stops_the_run_and_says_why(contoso, settings):
    def break_snapshot(records):
        agents = records["agents.jsonl.gz"]
        agents.append(dict(agents[0]))                      # a duplicate agent id
        agents[1]["MachineGroupId"] = "99999999999999999999999999"  # an unknown group
        agents[2]["Online"] = 7                               # not a VSA status code
        del agents[3]["Online"]                               # no status at all

    write_landing(settings.raw_path, D1, *DAYS[D1], mutate=break_snapshot)
    load_step(contoso, settings, D1)
    with pytest.raises(QualityGateFailed) as info:
        validate_step(contoso, settings, D1)
    message = str(info.value)
    assert "expect_column_values_to_be_unique(agent_id) failed on 2 of 7 rows" in message
    assert "expect_column_values_to_be_in_set(group_known) failed on 1 of 7 rows" in message
    assert "expect_column_values_to_be_in_set(online) failed on 1 of 7 rows" in message
    assert "expect_column_values_to_not_be_null(online) failed on 1 of 7 rows" in message
    with contoso.connect() as conn:
        run = conn.execute(text("SELECT status, message FROM sync_runs")).one()
        failed = conn.execute(text("SELECT COUNT(*) FROM quality_results WHERE NOT success")).scalar()
    assert run[0] == "failed" and "quality gate failed" in run[1]
    assert failed == 4
    with contoso.connect() as conn:  # the data team is told
        assert conn.execute(text("SELECT recipients FROM notification_outbox WHERE kind = 'quality'")).scalar() == "data@msp.example"

    def alerts() -> int:
        with contoso.connect() as conn:
            return conn.execute(text("SELECT COUNT(*) FROM notification_outbox WHERE kind = 'quality'")).scalar()

    with pytest.raises(QualityGateFailed):  # a re-run of the same extract: told already
        validate_step(contoso, settings, D1)
    assert alerts() == 1
    shutil.rmtree(settings.raw_path / str(D1))  # the extract moved aside, VSA's new one fails too
    write_landing(settings.raw_path, D1, *DAYS[D1], mutate=lambda records: records["agents.jsonl.gz"].append(
        dict(records["agents.jsonl.gz"][0], AgentName="again")))
    load_step(contoso, settings, D1)
    with pytest.raises(QualityGateFailed):
        validate_step(contoso, settings, D1)
    assert alerts() == 2


def test_clean_snapshot_passes_the_quality_gate(contoso, settings):
    write_landing(settings.raw_path, D1, *DAYS[D1])
    load_step(contoso, settings, D1)
    result = validate_step(contoso, settings, D1)
    assert result.detail["expectations"] == 9


def test_moving_between_billed_groups_is_a_decrement_and_an_increment(contoso, settings):
    for day in (D1, D2):
        run_day(contoso, settings, day)
    changes, _ = ledger(contoso)
    deltas = {c[1]: (c[2], c[5]) for c in changes}
    # a4 moved from G_SRV to G_WS: same effective date, one down, one up
    assert deltas["S-SRV"] == ("2024-03-02", -1) and deltas["S-WS"] == ("2024-03-02", 1)


def test_service_whose_view_was_not_landed_gets_no_false_zero(contoso, settings, caplog):
    """A counted service whose view the landing lacks gets no count (not a false zero) and a
    warning; a service that starts later needs no view that night: no warning, none extracted."""
    from agent_billing.contracts import apply_contracts
    from agent_billing.sync.pipeline import active_view_ids

    from .conftest import CONTRACT

    for day in (D1, D2):
        run_day(contoso, settings, day)
    later = {**CONTRACT}
    account = dict(later["accounts"][0])
    contract = dict(account["contracts"][0])
    contract["services"] = [*contract["services"], {
        "service_id": "S-NEWVIEW", "name": "Added later", "unit_price": "3.00",
        "units_source": "rmm_agent_count", "vsa_view_id": "99999", "start_date": "2024-01-01"}, {
        "service_id": "S-LATERVIEW", "name": "Starts later", "unit_price": "3.00",
        "units_source": "rmm_agent_count", "vsa_view_id": "88888", "start_date": D2.isoformat()}]
    account["contracts"] = [contract]
    apply_contracts(contoso, {"accounts": [account]})
    caplog.set_level("WARNING", logger="agent_billing")
    run_day(contoso, settings, D1, land=False)  # a re-run reuses the landing: view 99999 is not in it
    counts = unit_counts(contoso)
    assert ("S-NEWVIEW", str(D1)) not in counts
    assert counts[("S-WS", str(D1))] == 3
    not_extracted = [r.getMessage() for r in caplog.records if "was not extracted" in r.getMessage()]
    assert not_extracted == [f"{D1}: view 99999 of service S-NEWVIEW was not extracted for this date; no count recorded"]
    assert active_view_ids(contoso, D1) == sorted(["99999", VIEW]) and "88888" in active_view_ids(contoso, D2)
    # a service whose contract starts later: not counted on D1 (no warning), but its view is
    # extracted, so that a contract start moved back later can be recounted from D1's landing
    later_contract = {**contract, "contract_id": "C-LATER", "start_date": D2.isoformat(), "services": [{
        "service_id": "S-EARLY", "name": "Before its contract", "unit_price": "3.00",
        "units_source": "rmm_agent_count", "vsa_view_id": "77777", "start_date": "2024-01-01"}]}
    account["contracts"] = [contract, later_contract]
    apply_contracts(contoso, {"accounts": [account]})
    assert "77777" in active_view_ids(contoso, D1)
    caplog.clear()
    run_day(contoso, settings, D1, land=False)
    assert not any("S-EARLY" in r.getMessage() for r in caplog.records if "was not extracted" in r.getMessage())


def test_an_agent_renamed_as_it_moves_out_is_listed_under_its_previous_name(contoso, settings):
    """Issue 8: a departure is named as the service knew it, not by its name on the change date."""
    def rename_a4(records):
        for record in records["agents.jsonl.gz"]:
            if record["AgentId"] == AGENT["a4"]:
                record["AgentName"] = "renamed.elsewhere"

    run_day(contoso, settings, D1)
    write_landing(settings.raw_path, D2, *DAYS[D2], mutate=rename_a4)
    run_day(contoso, settings, D2, land=False)
    _, agents = ledger(contoso)
    named = {(cid.split(":")[0], aid): (name, event) for cid, aid, name, event in agents}
    assert named[("S-SRV", AGENT["a4"])] == ("a4.servers.root.contoso", "moved_out")
    assert named[("S-WS", AGENT["a4"])] == ("renamed.elsewhere", "moved_in")
    assert named[("S-WS", AGENT["a2"])] == ("a2.workstations.root.contoso", "removed")


def test_manual_changes_go_through_the_one_writer_and_a_same_day_edit_replaces_the_first(contoso):
    from agent_billing.sync.changes import record_manual_change

    day = date(2024, 3, 5)
    with contoso.begin() as conn:
        record_manual_change(conn, "S-SRV", day, 10, 12)
        record_manual_change(conn, "S-SRV", day, 12, 15)
    assert ledger(contoso)[0] == [("S-SRV:2024-03-05:manual", "S-SRV", "2024-03-05", 10, 15, 5, "manual")]
    with contoso.begin() as conn:
        assert record_manual_change(conn, "S-SRV", day, 15, 10) is None  # back where the day started
    assert ledger(contoso) == ([], [])


def test_a_backfilled_night_moves_the_next_change_of_a_service_the_next_night_did_not_count(contoso, settings):
    """D3's extract has no members file for S-VIEW's view (it gets no count that night). D2 was
    missed and is backfilled after D3 and D4 ran: S-VIEW's change on D4 is from D2's 2 units,
    not from D1's 1 (the re-derivation used to stop at D3, leaving D4's 1 -> 3 beside D2's
    1 -> 2: +3 billed for +2 agents). Running the nights again in date order changes nothing."""
    agents = {"a1": (G_WS, 1), "a2": (G_WS, 1), "a4": (G_SRV, 2)}
    d4 = D3 + timedelta(days=1)

    def no_view(records):
        records.pop(f"agents_in_view/{VIEW}.jsonl.gz")

    for day, members, mutate in ((D1, {"a1"}, None), (D2, {"a1", "a2"}, None), (D3, {"a1", "a2"}, no_view),
                                 (d4, {"a1", "a2", "a4"}, None)):
        write_landing(settings.raw_path, day, agents, members, mutate=mutate)
    for day in (D1, D3, d4, D2):
        run_day(contoso, settings, day, land=False)
    expected = [("2024-03-02", 1, 2), ("2024-03-04", 2, 3)]
    assert view_changes(contoso) == expected
    for day in (D1, D2, D3, d4):
        run_day(contoso, settings, day, land=False)
    assert view_changes(contoso) == expected


def view_changes(engine):
    with engine.connect() as conn:
        return [(str(d)[:10], b, a) for d, b, a in conn.execute(text(
            "SELECT effective_date, units_before, units_after FROM unit_changes WHERE service_id = 'S-VIEW' "
            "ORDER BY effective_date"))]


def test_the_agents_behind_a_change_are_those_since_the_service_s_previous_count(contoso, settings):
    """D2's extract has no members file for S-VIEW's view: S-VIEW is not counted that night.
    Its change on D3 (1 -> 2 units, from D1's count) names the one agent that joined the view
    since D1, not every member it has on D3."""
    agents = {"a1": (G_WS, 1), "a2": (G_WS, 1)}

    def no_view(records):
        records.pop(f"agents_in_view/{VIEW}.jsonl.gz")

    for day, members, mutate in ((D1, {"a1"}, None), (D2, {"a1"}, no_view), (D3, {"a1", "a2"}, None)):
        write_landing(settings.raw_path, day, agents, members, mutate=mutate)
        run_day(contoso, settings, day, land=False)
    changes, behind = ledger(contoso)
    assert [c[2:5] for c in changes if c[1] == "S-VIEW"] == [("2024-03-03", 1, 2)]
    assert [(a, e) for c, a, _, e in behind if c.startswith("S-VIEW:")] == [(AGENT["a2"], "moved_in")]


def test_a_re_count_of_a_complete_date_commits_its_changes_with_its_counts(contoso, settings):
    """A service added after D1 and D2 ran, starting before them: the re-runs count it. The
    changes that follow from D2's new count are committed with it, before the diff (a billing
    run in between never reads new counts beside changes derived from the old ones)."""
    for day in (D1, D2):
        run_day(contoso, settings, day)
    grown = copy.deepcopy(CONTRACT)
    grown["accounts"][0]["contracts"][0]["services"].append(
        {"service_id": "S-NEW", "name": "Servers too", "unit_price": "5.00", "units_source": "rmm_agent_count",
         "vsa_machine_group_id": G_SRV, "include_subgroups": False, "start_date": "2024-01-01"})
    apply_contracts(contoso, grown)
    run_day(contoso, settings, D1, land=False)  # S-NEW: 2 agents (a4, a5)

    count_step(contoso, settings, D2)  # S-NEW: 1 agent (a4 moved to workstations)
    after_count = ledger(contoso)
    assert ("S-NEW:2024-03-02:nightly_sync", "S-NEW", "2024-03-02", 2, 1, -1, "nightly_sync") in after_count[0]
    diff_step(contoso, settings, D2)
    assert ledger(contoso) == after_count


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_sync_prints_each_step_as_it_ends_so_a_failed_night_shows_what_was_done(contoso, warehouse_url, settings):
    """`agent-billing sync` prints a step's JSON line when the step ends, not all of them at the
    end: a night that fails (here its quality gate) or is interrupted still shows what was done."""
    import json

    from ..cli.conftest import run_cli

    write_landing(settings.raw_path, D1, *DAYS[D1], mutate=lambda records: records["agents.jsonl.gz"].append(
        dict(records["agents.jsonl.gz"][0])))  # a duplicate agent id: the gate fails
    run = run_cli("sync", "--date", D1.isoformat(), env={
        "AIRFLOW_CONN_BILLING_WAREHOUSE": warehouse_url, "AGENT_BILLING_RAW_PATH": str(settings.raw_path),
        "AGENT_BILLING_LATE_OBSERVATION": "allow", "AGENT_BILLING_DATA_TEAM_EMAILS": None})
    assert run.code == 2 and "quality gate failed" in run.stderr, run.stderr
    assert [json.loads(line)["status"] for line in run.stdout.splitlines()] == ["reused", "loaded"]


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_reader_that_stops_reading_never_stops_the_night(contoso, warehouse_url, settings):
    """`agent-billing sync --date D | head -1`: the step lines go to a closed pipe, and the night
    still runs to its end and is recorded complete (printing as steps end must not cut it short)."""
    import os
    import subprocess
    import sys

    write_landing(settings.raw_path, D1, *DAYS[D1])
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    env = {**os.environ, "AIRFLOW_CONN_BILLING_WAREHOUSE": warehouse_url,
           "AGENT_BILLING_RAW_PATH": str(settings.raw_path), "AGENT_BILLING_LATE_OBSERVATION": "allow"}
    env.pop("AGENT_BILLING_DATA_TEAM_EMAILS", None)
    try:
        done = subprocess.run([sys.executable, "-m", "agent_billing.cli", "sync", "--date", D1.isoformat()],
                              stdout=write, stderr=subprocess.PIPE, text=True, env=env, timeout=300)
    finally:
        os.close(write)
    assert done.returncode == 0, done.stderr
    with contoso.connect() as conn:
        assert conn.execute(text("SELECT status FROM sync_runs")).scalar() == "complete"
