"""A counted service made active on nights already synced (a new service starting in the past,
a start moved earlier, an end moved later or removed) has no count on them: apply names those
nights, and re-running them counts the service as if it had been active all along."""

from __future__ import annotations

from copy import deepcopy
from datetime import timedelta

import pytest
from sqlalchemy import text

from agent_billing.contracts import run_contracts
from agent_billing.sync.pipeline import count_step, diff_step, load_step

from .conftest import CONTRACT, DAYS, write_landing

D1, D2, D3 = sorted(DAYS)


def services(contract: dict) -> list[dict]:
    return contract["accounts"][0]["contracts"][0]["services"]


def service(contract: dict, service_id: str) -> dict:
    return next(s for s in services(contract) if s["service_id"] == service_id)


def sync(engine, settings, days) -> None:
    for day in days:
        if not (settings.raw_path / day.isoformat()).exists():
            write_landing(settings.raw_path, day, *DAYS[day])
        for step in (load_step, count_step, diff_step):
            step(engine, settings, day)


def counts(engine, service_id: str) -> dict:
    with engine.connect() as conn:
        return {str(d): u for d, u in conn.execute(text(
            "SELECT snapshot_date, units FROM service_unit_counts WHERE service_id = :s ORDER BY 1"),
            {"s": service_id})}


def added_in_the_past(contract: dict) -> tuple[dict, str]:
    twin = {**service(contract, "S-WS"), "service_id": "S-WS2", "name": "Workstations again",
            "start_date": D1.isoformat()}
    services(contract).append(twin)
    return contract, "S-WS2"


def start_moved_earlier(contract: dict) -> tuple[dict, str]:
    service(contract, "S-WS")["start_date"] = D1.isoformat()
    return contract, "S-WS"


def end_removed(contract: dict) -> tuple[dict, str]:
    service(contract, "S-WS").pop("end_date")
    return contract, "S-WS"


def with_reference(contract: dict) -> dict:
    """The contract with S-REF: S-WS's scope, active all along (what S-WS counts when active)."""
    services(contract).append({**service(contract, "S-WS"), "service_id": "S-REF", "name": "Reference",
                               "start_date": "2024-01-01"})
    return contract


def synced_with_ws_from_d3(contract: dict) -> dict:
    service(contract, "S-WS")["start_date"] = D3.isoformat()
    return contract


def synced_with_ws_ended_d1(contract: dict) -> dict:
    service(contract, "S-WS")["end_date"] = D1.isoformat()
    return contract


#: (the contract the nights were synced with, the change applied afterwards, the nights it names)
CASES = {
    "a new service starting in the past": (lambda c: c, added_in_the_past, (D1, D3)),
    "a start moved earlier": (synced_with_ws_from_d3, start_moved_earlier, (D1, D2)),
    "an end removed": (synced_with_ws_ended_d1, end_removed, (D2, D3)),
}


@pytest.mark.parametrize("warehouse_url", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("case", CASES)
def test_nights_synced_before_a_service_was_active_are_named_and_a_re_run_counts_them(warehouse, settings, case):
    synced_with, change, (first, last) = CASES[case]
    run_contracts(warehouse, synced_with(with_reference(deepcopy(CONTRACT))))
    sync(warehouse, settings, (D1, D2, D3))
    assert len(counts(warehouse, "S-REF")) == 3

    contract, service_id = change(synced_with(with_reference(deepcopy(CONTRACT))))
    plan = run_contracts(warehouse, contract)

    nights = (last - first).days + 1
    [warning] = plan.uncounted
    assert warning.startswith(f"service {service_id}")
    assert f"is now active on {nights} synced night(s) that did not count it ({first} to {last}): re-run them" \
        in warning
    assert run_contracts(warehouse, contract).uncounted == []  # applied again: nothing newly active

    sync(warehouse, settings, [first + timedelta(days=n) for n in range(nights)])  # the runbook's remedy
    assert counts(warehouse, service_id) == counts(warehouse, "S-REF")  # counted as if active all along


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_service_starting_after_the_last_synced_night_is_not_warned_of(warehouse, settings):
    run_contracts(warehouse, CONTRACT)
    sync(warehouse, settings, (D1, D2))
    contract = deepcopy(CONTRACT)
    services(contract).append({**service(contract, "S-WS"), "service_id": "S-NEW", "start_date": D3.isoformat()})
    assert run_contracts(warehouse, contract).uncounted == []
