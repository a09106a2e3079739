"""Backfill runs of adjacent dates may count and diff at the same time: the result is as if in order."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

from agent_billing.sync import pipeline
from agent_billing.sync.pipeline import count_step, diff_step, load_step

from .conftest import DAYS, write_landing
from .test_unit_changes import ledger

D1, D2, D3 = sorted(DAYS)


@pytest.mark.parametrize("warehouse_url", ["postgresql"], indirect=True)
def test_concurrent_diffs_of_adjacent_dates_converge(contoso, settings):
    for day in (D1, D2, D3):
        write_landing(settings.raw_path, day, *DAYS[day])
        load_step(contoso, settings, day)
        count_step(contoso, settings, day)
    diff_step(contoso, settings, D1)
    errors = []

    def diff(day):
        try:
            diff_step(contoso, settings, day)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=diff, args=(day,)) for day in (D3, D2)]
    for t in threads:
        t.start()
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
    merge_night = pipeline.merge_night

    def d3_holds_its_transaction_open(conn, day):
        merge_night(conn, day)
        if day == D3:
            merged.set()
            resume.wait(30)

    monkeypatch.setattr(pipeline, "merge_night", d3_holds_its_transaction_open)
    errors = []

    def count(day):
        try:
            count_step(contoso, settings, day)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    d3 = threading.Thread(target=count, args=(D3,))
    d3.start()
    assert merged.wait(30)
    d2 = threading.Thread(target=count, args=(D2,))
    d2.start()
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
