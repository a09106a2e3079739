"""Backfill runs of adjacent dates may diff at the same time: the result is as if in order."""

from __future__ import annotations

import threading

import pytest

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
