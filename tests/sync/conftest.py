"""A small VSA world scripted day by day, landed as raw extracts, and a contract over it."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time

import pytest
from sqlalchemy import text

from agent_billing.contracts import apply_contracts
from agent_billing.settings import Settings
from agent_billing.sync.landing import RawLanding

ORG = "73511820644390182275501461"
G_ROOT, G_WS, G_SRV, G_SUB = (f"7351182064439018227550{n}" for n in (1462, 1463, 1464, 1465))
VIEW = "55120913"
GROUPS = {  # id: (name, parent)
    G_ROOT: ("contoso.root", None),
    G_WS: ("contoso.root.workstations", G_ROOT),
    G_SRV: ("contoso.root.servers", G_ROOT),
    G_SUB: ("contoso.root.workstations.laptops", G_WS),
}
# Agent ids are 15 digits; names are the VSA machine ids.
AGENT = {f"a{n}": f"41886520337714{n}" for n in range(1, 10)}

CONTRACT = {
    "accounts": [
        {
            "account_id": "CONTOSO",
            "name": "Contoso Ltd",
            "vsa_org_id": ORG,
            "contracts": [
                {
                    "contract_id": "C-CONTOSO",
                    "currency": "USD",
                    "start_date": "2024-01-01",
                    "notify_emails": ["billing@contoso.example"],
                    "services": [
                        {"service_id": "S-WS", "name": "Workstations", "unit_price": "12.00",
                         "units_source": "rmm_agent_count", "vsa_machine_group_id": G_WS,
                         "include_subgroups": True, "start_date": "2024-01-01"},
                        {"service_id": "S-SRV", "name": "Servers", "unit_price": "40.00",
                         "units_source": "rmm_agent_count", "vsa_machine_group_id": G_SRV,
                         "include_subgroups": False, "start_date": "2024-01-01"},
                        {"service_id": "S-VIEW", "name": "Patched", "unit_price": "2.00",
                         "units_source": "rmm_agent_count", "vsa_view_id": VIEW,
                         "start_date": "2024-01-01"},
                        {"service_id": "S-ORG", "name": "All checked-in", "unit_price": "1.00",
                         "units_source": "rmm_agent_count", "exclude_never_checked_in": True,
                         "start_date": "2024-01-01"},
                    ],
                }
            ],
        }
    ]
}

# Day by day: agent -> (group, Online); and the view's members.
DAYS = {
    date(2024, 3, 1): (
        {"a1": (G_WS, 11), "a2": (G_WS, 1), "a3": (G_SUB, 0), "a4": (G_SRV, 2), "a5": (G_SRV, 2),
         "a6": (G_ROOT, 199)},
        {"a1", "a4"},
    ),
    # a7 added in the subgroup, a2 deleted, a4 moved servers -> workstations, view swaps a4 for a5
    date(2024, 3, 2): (
        {"a1": (G_WS, 11), "a3": (G_SUB, 0), "a4": (G_WS, 2), "a5": (G_SRV, 2), "a6": (G_ROOT, 199),
         "a7": (G_SUB, 1)},
        {"a1", "a5"},
    ),
    # the view gains a3 without any move; a6 checks in for the first time
    date(2024, 3, 3): (
        {"a1": (G_WS, 11), "a3": (G_SUB, 0), "a4": (G_WS, 2), "a5": (G_SRV, 2), "a6": (G_ROOT, 1),
         "a7": (G_SUB, 1)},
        {"a1", "a5", "a3"},
    ),
}


def agent_record(key: str, group: str, online: int, day: date) -> dict:
    name, _ = GROUPS[group]
    checked_in = None if online == 199 else f"{day.isoformat()}T01:00:00.000Z"
    return {
        "AgentId": AGENT[key], "AgentName": f"{key}.{'.'.join(reversed(name.split('.')))}",
        "Online": online, "OrgId": ORG, "MachineGroupId": group,
        "MachineGroup": ".".join(reversed(name.split("."))), "ComputerName": key.upper(),
        "LastCheckInTime": checked_in, "FirstCheckIn": checked_in,
    }


def write_landing(root, day: date, agents: dict, view_members: set, *, mutate=None) -> RawLanding:
    """Land a day as the extract step would (raw JSON lines + manifest)."""
    landing = RawLanding(root, day)
    records = {
        "orgs.jsonl.gz": [{"OrgId": ORG, "OrgName": "Contoso Ltd", "OrgRef": "contoso", "ParentOrgId": None}],
        "machine_groups.jsonl.gz": [
            {"MachineGroupId": gid, "MachineGroupName": name, "ParentMachineGroupId": parent, "OrgId": ORG}
            for gid, (name, parent) in GROUPS.items()
        ],
        "agents.jsonl.gz": [agent_record(k, g, o, day) for k, (g, o) in sorted(agents.items())],
        "views.jsonl.gz": [{"ViewDefId": VIEW, "ViewDefName": "Billable - Patched"}],
        f"agents_in_view/{VIEW}.jsonl.gz": [
            agent_record(k, *agents[k], day) for k in sorted(view_members)
        ],
    }
    if mutate:
        mutate(records)
    with landing.staging() as stage:
        stage.meta = {
            "observed_at": datetime.combine(day, time(2), tzinfo=UTC).isoformat(),
            "source": "test",
            "late_observation": False,
        }
        for name, rows in records.items():
            stage.write_lines(name, (json.dumps(r) for r in rows), total_records=len(rows))
    return landing


def staged_dates(engine, table: str = "vsa_agents") -> set[str]:
    """The dates a staging table holds rows of."""
    with engine.connect() as conn:
        return {str(d)[:10] for (d,) in conn.execute(text(f"SELECT DISTINCT snapshot_date FROM {table}"))}


def stages(engine) -> dict[str, tuple[str, int]]:
    """``staged_dates``: each date's stage and number of loads."""
    with engine.connect() as conn:
        return {str(d)[:10]: (s, n) for d, s, n in conn.execute(
            text("SELECT snapshot_date, stage, loads FROM staged_dates"))}


@pytest.fixture
def settings(tmp_path):
    return Settings(raw_path=tmp_path / "raw", data_team_emails="data@msp.example")


@pytest.fixture
def contoso(warehouse):
    apply_contracts(warehouse, CONTRACT)
    return warehouse
