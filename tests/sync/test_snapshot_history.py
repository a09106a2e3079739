"""The interval history over the pipeline: staging pruned, every counted date still answers."""

from __future__ import annotations

import threading
import time
from datetime import date, timedelta

import pytest
from sqlalchemy import text

from agent_billing.quality.snapshot_gate import QualityGateFailed
from agent_billing.settings import Settings
from agent_billing.sync import snapshot_history
from agent_billing.sync.load import delete_snapshot_rows
from agent_billing.sync.pipeline import (
    StagingMissing,
    count_step,
    diff_step,
    discard_snapshot,
    load_step,
    validate_step,
)
from agent_billing.sync.runs import lock_snapshot_date
from agent_billing.sync.snapshot_history import prune_staging
from agent_billing.warehouse.staging import (
    STAGING_TABLES,
    drop_dates,
    mark_loaded,
    partition_name,
    partitions,
)

from .conftest import DAYS, staged_dates, stages, write_landing
from .test_unit_changes import ledger, quarantine_d2, run_day

D1, D2, D3 = sorted(DAYS)

# docs/data-dictionary.md §5.5: which agents a service counted on a date (with their names then)
COUNTED_ON = """
SELECT sa.agent_id, a.agent_name
FROM service_agent_history sa
LEFT JOIN vsa_agent_history a
  ON a.agent_id = sa.agent_id AND a.valid_from <= :d AND (a.valid_to IS NULL OR a.valid_to > :d)
WHERE sa.service_id = :service_id
  AND sa.valid_from <= :d AND (sa.valid_to IS NULL OR sa.valid_to > :d)
ORDER BY sa.agent_id
"""


def counted_on(engine, service_id, day):
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(COUNTED_ON), {"service_id": service_id, "d": day})]


def test_every_counted_date_answers_after_its_staging_is_pruned(contoso, tmp_path):
    settings = Settings(raw_path=tmp_path / "raw", snapshot_retention_days=0)
    staged = {}
    for day in (D1, D2, D3):
        run_day(contoso, settings, day)
        with contoso.connect() as conn:
            staged[day] = {  # the night's agents with their names as staged that night
                sid: [tuple(r) for r in conn.execute(text(
                    "SELECT sa.agent_id, a.agent_name FROM service_agent_history sa JOIN vsa_agents a "
                    "ON a.snapshot_date = :d AND a.agent_id = sa.agent_id WHERE sa.service_id = :s "
                    "AND sa.valid_from <= :d AND (sa.valid_to IS NULL OR sa.valid_to > :d) ORDER BY 1"),
                    {"d": day, "s": sid})]
                for sid in ("S-WS", "S-SRV", "S-VIEW", "S-ORG")
            }
    with contoso.connect() as conn:
        kept = {str(d)[:10] for (d,) in conn.execute(text("SELECT DISTINCT snapshot_date FROM vsa_agents"))}
        counts = dict(conn.execute(text(
            "SELECT service_id, units FROM service_unit_counts WHERE snapshot_date = :d"), {"d": D1}).all())
    assert kept == {str(D3)}  # staging of D1 and D2 is gone
    if contoso.dialect.name == "postgresql":  # dropped whole: only D3's partitions are left
        with contoso.connect() as conn:
            left = {table: partitions(conn, table) for table in STAGING_TABLES}
        assert left == {table: [partition_name(table, D3)] for table in STAGING_TABLES}
    for day in (D1, D2, D3):
        for sid, agents in staged[day].items():
            assert counted_on(contoso, sid, day) == agents
    assert {sid: len(counted_on(contoso, sid, D1)) for sid in counts} == counts

    before = ledger(contoso)
    totals = "SELECT snapshot_date, agents_total FROM sync_runs ORDER BY 1"
    with contoso.connect() as conn:
        runs = conn.execute(text(totals)).all()
    diff_step(contoso, settings, D2)  # a re-derivation reads the history, not the pruned staging
    diff_step(contoso, settings, D3)
    assert ledger(contoso) == before
    with contoso.connect() as conn:
        assert conn.execute(text(totals)).all() == runs


def test_a_backfill_older_than_the_retention_keeps_its_staging_while_another_night_prunes(contoso, tmp_path):
    """A missed night backfilled weeks later is older than the retention. Another night's count
    prunes between its load and its gate: its rows stay until it is merged, then they go."""
    settings = Settings(raw_path=tmp_path / "raw", snapshot_retention_days=0)
    run_day(contoso, settings, D3)
    write_landing(settings.raw_path, D1, *DAYS[D1])
    load_step(contoso, settings, D1)
    count_step(contoso, settings, D3)  # the other night: a re-run of D3 prunes with D3 as latest
    assert staged_dates(contoso) == {str(D1), str(D3)}
    validate_step(contoso, settings, D1)
    count_step(contoso, settings, D1)
    assert diff_step(contoso, settings, D1).status == "complete"
    assert len(counted_on(contoso, "S-ORG", D1)) == 5
    count_step(contoso, settings, D3)  # D1 is merged now: the next prune drops it
    assert staged_dates(contoso) == {str(D3)}


def test_a_discarded_night_goes_with_the_retention_a_failed_one_stays_to_be_looked_at(contoso, tmp_path):
    settings = Settings(raw_path=tmp_path / "raw", snapshot_retention_days=0)
    quarantine_d2(contoso, settings)
    discard_snapshot(contoso, settings, D2)
    run_day(contoso, settings, D3)
    assert staged_dates(contoso) == {str(D3)}  # D1 merged, D2 discarded: both settled

    failed = D1 - timedelta(days=1)  # a backfill whose gate fails: a duplicate agent id
    write_landing(settings.raw_path, failed, *DAYS[D1], mutate=lambda r: r["agents.jsonl.gz"].append(
        dict(r["agents.jsonl.gz"][0])))
    load_step(contoso, settings, failed)
    with pytest.raises(QualityGateFailed):
        validate_step(contoso, settings, failed)
    count_step(contoso, settings, D3)
    assert staged_dates(contoso) == {str(failed), str(D3)}


def test_a_discarded_night_leaves_the_history(contoso, settings):
    quarantine_d2(contoso, settings)
    assert len(counted_on(contoso, "S-ORG", D2)) == 1
    discard_snapshot(contoso, settings, D2)
    with contoso.connect() as conn:
        merged = [str(d)[:10] for (d,) in conn.execute(text("SELECT snapshot_date FROM history_dates"))]
        runs = conn.execute(text("SELECT COUNT(*) FROM vsa_agent_history WHERE valid_to IS NOT NULL")).scalar()
    assert merged == [str(D1)] and runs == 0  # every agent of D1 is still open, nothing closed on D2
    run_day(contoso, settings, D3)
    assert len(counted_on(contoso, "S-ORG", D3)) == 6 and len(counted_on(contoso, "S-ORG", D1)) == 5


def test_the_migration_turns_per_date_rows_into_intervals(tmp_path):
    from agent_billing.warehouse import connect_warehouse

    check_conversion(connect_warehouse(f"sqlite:///{tmp_path / 'old.db'}"))


def check_conversion(engine):
    """Per-date rows of a 0004 warehouse, upgraded: the intervals answer like the rows did."""
    from agent_billing.warehouse import upgrade

    upgrade(engine, "0004")
    days = [date(2024, 3, d) for d in (1, 2, 3, 5)]
    present = {  # agent: dates present (5 is after a gap: 4 was never counted)
        "x": days, "y": [days[0], days[2]], "z": [days[1], days[3]],
    }
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO accounts (account_id, name, vsa_org_id) VALUES ('A', 'A', 'o')"))
        conn.execute(text("INSERT INTO contracts (contract_id, account_id, currency, billing_day, start_date) "
                          "VALUES ('C', 'A', 'USD', 1, '2024-01-01')"))
        conn.execute(text("INSERT INTO services (service_id, contract_id, name, unit_price, units_source, "
                          "start_date) VALUES ('S', 'C', 'S', 1, 'rmm_agent_count', '2024-01-01')"))
        for day in days:
            here = [a for a, ds in present.items() if day in ds]
            conn.execute(text("INSERT INTO service_unit_counts VALUES ('S', :d, :n)"), {"d": day, "n": len(here)})
            for agent in here:
                conn.execute(text("INSERT INTO service_agents VALUES (:d, 'S', :a)"), {"d": day, "a": agent})
                conn.execute(text("INSERT INTO vsa_agents (snapshot_date, agent_id, agent_name, org_id, online) "
                                  "VALUES (:d, :a, :n, 'o', 1)"), {"d": day, "a": agent, "n": f"{agent}-{day.day}" if agent == "z" else agent})
    upgrade(engine)
    for day in days:
        assert [a for a, _ in counted_on(engine, "S", day)] == sorted(a for a, ds in present.items() if day in ds)
    assert counted_on(engine, "S", days[3]) == [("x", "x"), ("z", "z-5")]
    with engine.connect() as conn:
        runs = conn.execute(text("SELECT agent_id, valid_from, valid_to FROM service_agent_history ORDER BY 1, 2")).all()
    assert [(a, str(f), t and str(t)) for a, f, t in runs] == [
        ("x", "2024-03-01", None), ("y", "2024-03-01", "2024-03-02"), ("y", "2024-03-03", "2024-03-05"),
        ("z", "2024-03-02", "2024-03-03"), ("z", "2024-03-05", None),
    ]
    engine.dispose()


def test_a_rerun_of_a_counted_old_date_keeps_its_fresh_staging_until_it_is_merged_again(contoso, tmp_path):
    """D1 was counted and its staging dropped by the retention. It is re-run from its load; another
    night's count prunes between that load and its gate: the fresh rows stay until D1 is merged."""
    settings = Settings(raw_path=tmp_path / "raw", snapshot_retention_days=0)
    run_day(contoso, settings, D1)
    run_day(contoso, settings, D3)
    assert staged_dates(contoso) == {str(D3)}
    load_step(contoso, settings, D1)  # the re-run
    count_step(contoso, settings, D3)  # the other night prunes
    assert staged_dates(contoso) == {str(D1), str(D3)}
    validate_step(contoso, settings, D1)
    count_step(contoso, settings, D1)
    assert diff_step(contoso, settings, D1).status == "complete"
    assert len(counted_on(contoso, "S-ORG", D1)) == 5
    count_step(contoso, settings, D3)
    assert staged_dates(contoso) == {str(D3)}
    assert {day: stage for day, (stage, _) in stages(contoso).items()} == {str(D1): "dropped", str(D3): "settled"}


def test_a_date_whose_staging_is_gone_is_refused_before_its_count_touches_the_history(contoso, tmp_path):
    settings = Settings(raw_path=tmp_path / "raw", snapshot_retention_days=0)
    run_day(contoso, settings, D1)
    run_day(contoso, settings, D3)  # drops D1's staging
    write_landing(settings.raw_path, D2, *DAYS[D2])  # landed, never loaded
    counts = "SELECT service_id, units FROM service_unit_counts WHERE snapshot_date = :d ORDER BY 1"
    with contoso.connect() as conn:
        before = conn.execute(text(counts), {"d": D1}).all()
    for step in (validate_step, count_step):
        with pytest.raises(StagingMissing, match=(
            "^snapshot 2024-03-01's staging was dropped by the retention "
            r"\(AGENT_BILLING_SNAPSHOT_RETENTION_DAYS=0\): nothing to (check|count); re-run the night from its load "
        )):
            step(contoso, settings, D1)
        with pytest.raises(StagingMissing, match="^snapshot 2024-03-02 has not been loaded: nothing to"):
            step(contoso, settings, D2)
    with contoso.connect() as conn:
        assert conn.execute(text(counts), {"d": D1}).all() == before
    assert len(counted_on(contoso, "S-ORG", D1)) == 5  # the history of D1 is untouched
    load_step(contoso, settings, D1)  # the way back: the night from its load
    validate_step(contoso, settings, D1)
    count_step(contoso, settings, D1)
    assert len(counted_on(contoso, "S-ORG", D1)) == 5


@pytest.mark.parametrize("warehouse_url", ["postgresql"], indirect=True)
def test_a_prune_that_waits_for_a_load_of_the_date_keeps_what_the_load_wrote(contoso, tmp_path):
    """The prune looked while D1 was settled; a load of D1 holds the date when the prune comes to
    drop it. Once the load commits, the prune sees D1 loaded again and leaves its staging."""
    settings = Settings(raw_path=tmp_path / "raw", snapshot_retention_days=30)
    run_day(contoso, settings, D1)
    run_day(contoso, settings, D3)
    with contoso.begin() as load:  # what load_snapshot does, held open
        lock_snapshot_date(load, D1)
        delete_snapshot_rows(load, D1)
        mark_loaded(load, D1)
        load.execute(text("INSERT INTO vsa_agents (snapshot_date, agent_id, agent_name, org_id, online) "
                          "VALUES (:d, 'A-NEW', 'new', 'O-1', 1)"), {"d": D1})
        errors = []

        def prune():
            try:
                prune_staging(contoso, D3, 0)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        pruner = threading.Thread(target=prune)
        pruner.start()
        with contoso.connect() as watch:  # until the prune waits for a lock the load holds
            for _ in range(200):
                if watch.execute(text("SELECT COUNT(*) FROM pg_locks WHERE NOT granted")).scalar():
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the prune never waited for the load")
    pruner.join(timeout=30)
    assert errors == [] and not pruner.is_alive()
    assert staged_dates(contoso) == {str(D1), str(D3)}
    assert stages(contoso)[str(D1)] == ("loaded", 2)
    with contoso.connect() as conn:
        assert conn.execute(text("SELECT agent_id FROM vsa_agents WHERE snapshot_date = :d"),
                            {"d": D1}).scalars().all() == ["A-NEW"]


def test_a_prune_cut_short_leaves_a_date_that_is_refused_and_the_next_prune_finishes_it(contoso, tmp_path, monkeypatch):
    """The prune's process dies after dropping D1's agents, before its view members (each table
    is its own transaction). D1 is already marked dropped: a count of D1 run now (a cleared task)
    is refused and the histories keep D1, where it used to merge an empty night into them and
    count every service 0. The next prune drops what is left."""
    settings = Settings(raw_path=tmp_path / "raw", snapshot_retention_days=30)
    run_day(contoso, settings, D1)
    run_day(contoso, settings, D3)
    counts = "SELECT service_id, units FROM service_unit_counts WHERE snapshot_date = :d ORDER BY 1"
    with contoso.connect() as conn:
        before = conn.execute(text(counts), {"d": D1}).all()

    def dies_after_the_first_table(conn, table, days):
        if table != STAGING_TABLES[0]:
            raise RuntimeError("the worker was killed")
        drop_dates(conn, table, days)

    monkeypatch.setattr(snapshot_history, "drop_dates", dies_after_the_first_table)
    with pytest.raises(RuntimeError):
        prune_staging(contoso, D3, 0)
    monkeypatch.undo()
    with pytest.raises(StagingMissing, match="^snapshot 2024-03-01's staging was dropped by the retention"):
        count_step(contoso, settings, D1)
    with contoso.connect() as conn:
        assert conn.execute(text(counts), {"d": D1}).all() == before
    assert len(counted_on(contoso, "S-ORG", D1)) == 5
    assert stages(contoso)[str(D1)][0] == "dropped"
    assert staged_dates(contoso, "vsa_agents") == {str(D3)}
    assert staged_dates(contoso, "vsa_view_members") == {str(D1), str(D3)}
    prune_staging(contoso, D3, 0)
    assert stages(contoso)[str(D1)][0] == "dropped"
    assert {table: staged_dates(contoso, table) for table in STAGING_TABLES} == {table: {str(D3)} for table in STAGING_TABLES}


def test_a_date_run_again_between_the_drops_of_a_prune_keeps_all_its_staging(contoso, tmp_path, monkeypatch):
    """D1 is loaded, checked and counted again while the prune is between its tables: the prune
    leaves D1's new staging alone in every table, so a later count of D1 finds its view members."""
    settings = Settings(raw_path=tmp_path / "raw", snapshot_retention_days=30)
    run_day(contoso, settings, D1)
    run_day(contoso, settings, D3)
    drop, again = snapshot_history.drop_marked, [D1]

    def run_d1_again_after_the_first_table(engine, table):
        dropped = drop(engine, table)
        if table == STAGING_TABLES[0] and again:
            run_day(contoso, settings, again.pop(), land=False)
        return dropped

    monkeypatch.setattr(snapshot_history, "drop_marked", run_d1_again_after_the_first_table)
    prune_staging(contoso, D3, 0)
    monkeypatch.undo()
    assert stages(contoso)[str(D1)] == ("settled", 2)
    assert {table: staged_dates(contoso, table) for table in STAGING_TABLES} == {
        table: {str(D1), str(D3)} for table in STAGING_TABLES}
    with contoso.connect() as conn:
        before = conn.execute(text("SELECT service_id, units FROM service_unit_counts WHERE snapshot_date = :d "
                                   "ORDER BY 1"), {"d": D1}).all()
    count_step(contoso, settings, D1)  # a cleared count of D1: the same counts, view scopes included
    with contoso.connect() as conn:
        assert conn.execute(text("SELECT service_id, units FROM service_unit_counts WHERE snapshot_date = :d "
                                 "ORDER BY 1"), {"d": D1}).all() == before
