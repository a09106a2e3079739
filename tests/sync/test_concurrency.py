"""Backfill runs of adjacent dates may count and diff at the same time: the result is as if in order."""

from __future__ import annotations

import copy
import threading
import time
from decimal import Decimal

import pytest
from sqlalchemy import text

from agent_billing.billing import store as billing_store
from agent_billing.billing.run import plan_contract, run_billing
from agent_billing.contracts import apply_contracts
from agent_billing.sync.changes import counting
from agent_billing.sync.pipeline import count_step, diff_step, load_step

from .conftest import CONTRACT, DAYS, write_landing
from .test_unit_changes import ledger

D1, D2, D3 = sorted(DAYS)


def started(errors: list, step, *args) -> threading.Thread:
    """A thread running ``step(*args)``, started; what it raises goes to ``errors``."""

    def run():
        try:
            step(*args)
        except Exception as exc:  # noqa: BLE001 - the test asserts on errors
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("warehouse_url", ["postgresql"], indirect=True)
def test_concurrent_diffs_of_adjacent_dates_converge(contoso, settings):
    for day in (D1, D2, D3):
        write_landing(settings.raw_path, day, *DAYS[day])
        load_step(contoso, settings, day)
        count_step(contoso, settings, day)
    diff_step(contoso, settings, D1)
    errors = []
    threads = [started(errors, diff_step, contoso, settings, day) for day in (D3, D2)]
    for t in threads:
        t.join()
    assert errors == []
    concurrent = ledger(contoso)
    for day in (D2, D3):  # the same dates once more, one after the other
        diff_step(contoso, settings, day)
    assert ledger(contoso) == concurrent
    # D3 is diffed against D2, not D1: S-WS changed once (on the 2nd), not twice.
    assert [c for c in concurrent[0] if c[1] == "S-WS"] == [
        ("S-WS:2024-03-02:nightly_sync", "S-WS", "2024-03-02", 3, 4, 1, "nightly_sync")
    ]


COUNTED_FROM_HISTORY = """
SELECT c.snapshot_date, c.service_id, c.units,
       (SELECT COUNT(*) FROM service_agent_history h WHERE h.service_id = c.service_id
          AND h.valid_from <= c.snapshot_date AND (h.valid_to IS NULL OR h.valid_to > c.snapshot_date)) AS agents
FROM service_unit_counts c ORDER BY 1, 2
"""


@pytest.mark.parametrize("warehouse_url", ["postgresql"], indirect=True)
def test_counts_of_two_dates_at_once_leave_the_history_as_if_in_order(contoso, settings, monkeypatch):
    """A backfill counts D3 and D2 at the same time, D3's transaction still open while D2's runs.
    Each merge reads the merged dates around its own: D2's must wait for D3's, or it misses D3
    (an agent arriving on D2 got a second run from D2 on, overlapping D3's, and D3 then counted
    it twice in the history)."""
    for day in (D1, D2, D3):
        write_landing(settings.raw_path, day, *DAYS[day])
        load_step(contoso, settings, day)
    count_step(contoso, settings, D1)
    merged, resume = threading.Event(), threading.Event()
    merge_night = counting.merge_night

    def d3_holds_its_transaction_open(conn, day, **kwargs):
        merge_night(conn, day, **kwargs)
        if day == D3:
            merged.set()
            resume.wait(30)

    monkeypatch.setattr(counting, "merge_night", d3_holds_its_transaction_open)
    errors = []
    d3 = started(errors, count_step, contoso, settings, D3)
    assert merged.wait(30)
    d2 = started(errors, count_step, contoso, settings, D2)
    with contoso.connect() as watch:  # D2 waits for D3 (it may also finish first, without the lock)
        for _ in range(100):
            if not d2.is_alive() or watch.execute(text("SELECT COUNT(*) FROM pg_locks WHERE NOT granted")).scalar():
                break
            time.sleep(0.05)
    resume.set()
    d3.join(30)
    d2.join(30)
    assert errors == [] and not d3.is_alive() and not d2.is_alive()
    with contoso.connect() as conn:
        rows = conn.execute(text(COUNTED_FROM_HISTORY)).all()
    assert len(rows) == 12
    assert [(str(day)[:10], service, units, agents) for day, service, units, agents in rows if units != agents] == []


@pytest.mark.parametrize("warehouse_url", ["postgresql"], indirect=True)
def test_a_billing_run_reads_the_unit_history_before_or_after_a_re_derivation_never_a_mix(
        warehouse, settings, monkeypatch):
    """D1's run stopped before its diff, D2 completed. Billing as of D2 reads the contract's unit
    changes, then (another statement) its first observations; D1's diff, re-run by a backfill,
    moves the first observation. It used to commit between the two reads: March's invoice was
    posted from neither state (S-SRV 2 units without its -1 change). The diff now waits."""
    contract = copy.deepcopy(CONTRACT)
    for item in (contract["accounts"][0]["contracts"][0], *contract["accounts"][0]["contracts"][0]["services"]):
        item["start_date"] = "2024-03-01"
    apply_contracts(warehouse, contract)
    for day in (D1, D2):
        write_landing(settings.raw_path, day, *DAYS[day])
        load_step(warehouse, settings, day)
        count_step(warehouse, settings, day)
    diff_step(warehouse, settings, D2)
    with warehouse.connect() as conn, conn.begin() as transaction:  # what billing sees now
        before = lines_of(plan_contract(conn, billing_store.lock_contract(conn, "C-CONTOSO"), D2).lines)
        transaction.rollback()
    read, resume = threading.Event(), threading.Event()
    all_rows = billing_store._all_rows

    def pause_after_the_unit_changes(conn, name, params):
        rows = all_rows(conn, name, params)
        if name == "unit_changes" and not read.is_set():
            read.set()
            resume.wait(30)
        return rows

    monkeypatch.setattr(billing_store, "_all_rows", pause_after_the_unit_changes)
    errors = []
    billing = started(errors, lambda: run_billing(warehouse, D2, today=D2).raise_for_failures())
    assert read.wait(30)
    backfill = started(errors, diff_step, warehouse, settings, D1)
    backfill.join(2)  # the diff waits for the billing run's contract (or, before, committed meanwhile)
    resume.set()
    billing.join(30)
    backfill.join(30)
    assert errors == [] and not billing.is_alive() and not backfill.is_alive()
    with warehouse.connect() as conn:
        posted = conn.execute(text(
            "SELECT service_id, kind, units, amount FROM invoice_lines ORDER BY service_id, kind, units")).all()
    assert [(s, k, u, Decimal(a)) for s, k, u, a in posted] == before


def lines_of(lines):
    return sorted((x.service_id, x.kind, x.units, x.amount) for x in lines)
