"""The VSA simulator over real HTTP: auth, envelope, paging, OData, faults, worlds, CLI."""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from vsa_simulator import (
    FaultConfig,
    GeneratedScenario,
    ScenarioError,
    ScriptedScenario,
    SimulatorServer,
)
from vsa_simulator.testing import run_simulator, small_world

API = "/api/v1.0"


def login(vsa: SimulatorServer, bearer: str = "Token") -> requests.Session:
    session = requests.Session()
    reply = session.get(f"{vsa.base_url}{API}/auth", auth=(vsa.user, vsa.token), timeout=10)
    assert reply.status_code == 200, reply.text
    session.headers["Authorization"] = f"Bearer {reply.json()['Result'][bearer]}"
    return session


def get(session: requests.Session, vsa: SimulatorServer, path: str, **params: Any) -> requests.Response:
    return session.get(f"{vsa.base_url}{API}{path}", params=params, timeout=10)


def extract(session: requests.Session, vsa: SimulatorServer, path: str = "/assetmgmt/agents",
            **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Page like a client: $skip by 100 until TotalRecords (as last reported)."""
    records: list[dict[str, Any]] = []
    skip, total = 0, 1
    while skip < total:
        body = get(session, vsa, path, **{"$skip": skip, "$top": 100, "$orderby": "AgentName asc", **params}).json()
        assert body["ResponseCode"] == 0, body
        total = body["TotalRecords"]
        records += body["Result"]
        skip += 100
    return records, total


@pytest.fixture
def vsa():
    with run_simulator() as server:
        yield server


# -- auth ------------------------------------------------------------------------------


def test_auth_returns_a_session_whose_tokens_work(vsa):
    reply = requests.get(f"{vsa.base_url}/API/v1.0/Auth", auth=(vsa.user, vsa.token), timeout=10)
    body = reply.json()
    assert reply.status_code == 200 and body["ResponseCode"] == 0 and body["Error"] == "None"
    result = body["Result"]
    assert result["UserName"] == "billing.integrator" and re.fullmatch(r"\d{8}", result["Token"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}", result["SessionExpiration"])
    assert result["OffSetInMinutes"] == 0 and result["ApiToken"]
    for bearer in ("Token", "ApiToken"):
        assert get(login(vsa, bearer), vsa, "/system/orgs").status_code == 200


def test_bad_credentials_and_bad_bearers_are_401(vsa):
    url = f"{vsa.base_url}{API}"
    wrong = requests.get(f"{url}/auth", auth=(vsa.user, "not-the-token"), timeout=10)
    body = wrong.json()
    assert wrong.status_code == 401 and (body["Result"], body["ResponseCode"], body["Status"]) == (None, 401, "Error")
    assert "Invalid credentials" in body["Error"]
    assert requests.get(f"{url}/auth", timeout=10).status_code == 401
    assert requests.get(f"{url}/auth", headers={"Authorization": "Basic !!!"}, timeout=10).status_code == 401
    assert requests.get(f"{url}/system/orgs", timeout=10).status_code == 401
    assert requests.get(f"{url}/system/orgs", headers={"Authorization": "Bearer 123"}, timeout=10).status_code == 401


def test_session_expires_after_n_requests_then_reauth_works():
    with run_simulator(faults=FaultConfig(session_expires_after=2)) as vsa:
        session = login(vsa)
        assert [get(session, vsa, "/system/views").status_code for _ in range(3)] == [200, 200, 401]
        assert get(login(vsa), vsa, "/system/views").status_code == 200
        assert vsa.auth_calls == 2


def test_session_expiration_is_server_local_time_and_enforced():
    with run_simulator(session_minutes=0, offset_minutes=420) as vsa:
        reply = requests.get(f"{vsa.base_url}{API}/auth", auth=(vsa.user, vsa.token), timeout=10).json()["Result"]
        expires_utc = datetime.fromisoformat(reply["SessionExpiration"]) + timedelta(minutes=reply["OffSetInMinutes"])
        assert abs((expires_utc - datetime.now(UTC).replace(tzinfo=None)).total_seconds()) < 60
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {reply['Token']}"
        assert get(session, vsa, "/system/orgs").status_code == 401  # a zero-minute session


def test_expire_sessions_control_endpoint(vsa):
    session = login(vsa)
    assert requests.post(f"{vsa.base_url}/_sim/sessions/expire", timeout=10).status_code == 200
    assert get(session, vsa, "/system/orgs").status_code == 401


# -- envelope and paging ---------------------------------------------------------------


def test_pages_hold_at_most_100_records_whatever_top_says(vsa):
    session = login(vsa)
    body = get(session, vsa, "/assetmgmt/agents", **{"$top": 500}).json()
    assert (body["TotalRecords"], len(body["Result"])) == (300, 100)
    assert list(body) == ["TotalRecords", "Result", "ResponseCode", "Status", "Error"]
    assert len(get(session, vsa, "/assetmgmt/agents", **{"$top": 7}).json()["Result"]) == 7
    assert len(get(session, vsa, "/assetmgmt/agents", **{"$skip": 250}).json()["Result"]) == 50
    assert get(session, vsa, "/assetmgmt/agents", **{"$top": "x"}).status_code == 400


def test_paging_by_agent_name_covers_every_agent_exactly_once(vsa):
    session = login(vsa)
    records, total = extract(session, vsa)
    ids = [r["AgentId"] for r in records]
    assert len(ids) == len(set(ids)) == total == 300
    assert all(isinstance(i, str) and re.fullmatch(r"[1-9]\d{14}", i) for i in ids)
    names = [r["AgentName"] for r in records]
    assert names == sorted(names)
    assert len(records[0]) >= 40 and records[0]["AgentName"].endswith(records[0]["MachineGroup"])
    desc = get(session, vsa, "/assetmgmt/agents", **{"$orderby": "AgentName desc", "$top": 3}).json()
    assert [r["AgentName"] for r in desc["Result"]] == names[::-1][:3]
    by_ram = get(session, vsa, "/assetmgmt/agents", **{"$orderby": "RamMBytes desc, AgentName asc"}).json()
    rams = [r["RamMBytes"] for r in by_ram["Result"]]
    assert rams == sorted(rams, reverse=True)


def test_single_agent_is_an_object_without_total(vsa):
    session = login(vsa)
    first = get(session, vsa, "/assetmgmt/agents", **{"$top": 1}).json()["Result"][0]
    body = get(session, vsa, f"/assetmgmt/agents/{first['AgentId']}").json()
    assert "TotalRecords" not in body and body["Result"] == first
    missing = get(session, vsa, "/assetmgmt/agents/999999999999998")
    assert missing.status_code == 404 and missing.json()["Error"]


def test_orgs_groups_and_org_groups(vsa):
    session = login(vsa)
    orgs = get(session, vsa, "/system/orgs").json()["Result"]
    groups = get(session, vsa, "/system/machinegroups", **{"$orderby": "MachineGroupName asc"}).json()["Result"]
    assert len(orgs) == 5 and all(re.fullmatch(r"\d{26}", o["OrgId"]) for o in orgs)
    roots = [g for g in groups if g["ParentMachineGroupId"] is None]
    assert sorted(g["MachineGroupName"] for g in roots) == sorted(f"{o['OrgRef']}.root" for o in orgs)
    nulls = get(session, vsa, "/system/machinegroups", **{"$filter": "ParentMachineGroupId eq null"}).json()
    assert nulls["TotalRecords"] == len(roots)
    org = orgs[0]["OrgId"]
    own = get(session, vsa, f"/system/orgs/{org}/machinegroups").json()["Result"]
    assert own and {g["OrgId"] for g in own} == {org}
    assert len(own) == sum(g["OrgId"] == org for g in groups)
    assert get(session, vsa, f"/system/orgs/{org}").json()["Result"]["OrgId"] == org
    assert get(session, vsa, "/system/orgs/1/machinegroups").status_code == 404


# -- OData -----------------------------------------------------------------------------


def test_filters_count_exactly(vsa):
    session = login(vsa)
    agents, _ = extract(session, vsa)
    group = agents[0]["MachineGroupId"]

    def total(expr: str) -> int:
        body = get(session, vsa, "/assetmgmt/agents", **{"$filter": expr, "$top": 1}).json()
        assert body["ResponseCode"] == 0, body
        return body["TotalRecords"]

    assert total(f"MachineGroupId eq {group}M") == sum(a["MachineGroupId"] == group for a in agents)
    org = agents[0]["OrgId"]
    assert total(f"OrgId eq {org}M and Online ne 199") == sum(
        a["OrgId"] == org and a["Online"] != 199 for a in agents)
    assert total("LastCheckInTime eq null") == sum(a["Online"] == 199 for a in agents) > 0
    assert total("startswith(AgentName,'pc-') or (startswith(AgentName,'ws-'))") == sum(
        a["AgentName"].startswith(("pc-", "ws-")) for a in agents)
    ref = agents[0]["MachineGroup"].rsplit(".", 1)[1]
    assert total(f"endswith(MachineGroup,'root.{ref}')") == sum(
        a["MachineGroup"].endswith(f"root.{ref}") for a in agents)
    assert total("substringof('SERVERS', MachineGroup)") == sum("servers" in a["MachineGroup"] for a in agents)
    assert total(f"AgentId eq {agents[5]['AgentId']}M") == 1
    assert total("Online gt 10 and Online le 100 and not (Online eq 12)") == sum(a["Online"] == 11 for a in agents)
    assert total("LastCheckInTime lt datetime'2023-12-31T00:00:00'") == sum(
        (a["LastCheckInTime"] or "9") < "2023-12-31" for a in agents)


@pytest.mark.parametrize(
    ("expr", "status", "text"),
    [
        ("MachineGroupId eq 73511820644390182275501462", 400, "Unrecognized 'Edm.Int32' literal"),
        ("AgentName eq 5", 400, "incompatible types"),
        ("NoSuchField eq 'x'", 400, "Could not find a property"),
        ("AgentName eq", 400, "Syntax error"),
        ("ToolTipNotes eq 'x'", 200, "not filterable"),
    ],
)
def test_refused_filters(vsa, expr, status, text):
    reply = get(login(vsa), vsa, "/assetmgmt/agents", **{"$filter": expr})
    body = reply.json()
    assert reply.status_code == status and body["ResponseCode"] == 400 and body["Result"] is None
    assert text in body["Error"]


def test_orderby_on_a_non_sortable_field_is_an_error_inside_http_200(vsa):
    reply = get(login(vsa), vsa, "/assetmgmt/agents", **{"$orderby": "AgentId asc"})
    assert reply.status_code == 200
    assert reply.json() == {"Result": None, "ResponseCode": 400, "Status": "Error",
                            "Error": "The field 'AgentId' is not sortable."}


def test_agents_in_view(vsa):
    session = login(vsa)
    views = {v["ViewDefName"]: v["ViewDefId"] for v in get(session, vsa, "/system/views").json()["Result"]}
    assert {"Billable - Servers", "Billable - Workstations", "Patched this week"} <= views.keys()
    assert all(re.fullmatch(r"\d{8}", v) for v in views.values())
    servers, total = extract(session, vsa, f"/assetmgmt/agentsinview/{views['Billable - Servers']}")
    agents, _ = extract(session, vsa)
    server_os = {"2016", "2019", "2022", "Linux"}
    assert total == len(servers) == sum(a["OSType"] in server_os for a in agents) > 0
    assert all(s["OSType"] in server_os for s in servers) and set(servers[0]) == set(agents[0])
    missing = get(session, vsa, "/assetmgmt/agentsinview/12345678")
    assert missing.status_code == 404 and "12345678" in missing.json()["Error"]


def test_ids_as_numbers_keeps_every_digit():
    world = small_world()
    with run_simulator(world) as as_text, run_simulator(world, ids_as_numbers=True) as as_number:
        text = get(login(as_text), as_text, "/assetmgmt/agents", **{"$top": 5}).json()["Result"]
        raw = get(login(as_number), as_number, "/assetmgmt/agents", **{"$top": 5}).text
    assert re.search(r'"OrgId":\d{26},', raw)
    numbers = json.loads(raw)["Result"]  # Python ints: exact
    assert [str(r["MachineGroupId"]) for r in numbers] == [r["MachineGroupId"] for r in text]
    assert [str(r["AgentId"]) for r in numbers] == [r["AgentId"] for r in text]


# -- faults ----------------------------------------------------------------------------


def test_429_carries_retry_after():
    with run_simulator(faults=FaultConfig(fail_next=[200, 429], retry_after=7)) as vsa:
        session = login(vsa)  # the 200 lets /auth through
        limited = get(session, vsa, "/system/orgs")
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
        assert get(session, vsa, "/system/orgs").status_code == 200


def test_scripted_faults_in_order():
    faults = FaultConfig(fail_next=[503, "error_in_200", "malformed", "reset"], fail_path="/system/views")
    with run_simulator(faults=faults) as vsa:
        session = login(vsa)
        assert get(session, vsa, "/system/views").status_code == 503
        inside = get(session, vsa, "/system/views")
        assert inside.status_code == 200 and inside.json()["ResponseCode"] == 500
        broken = get(session, vsa, "/system/views")
        assert broken.status_code == 200
        with pytest.raises(ValueError):
            broken.json()
        with pytest.raises(requests.ConnectionError):
            get(session, vsa, "/system/views")
        assert get(session, vsa, "/system/views").json()["ResponseCode"] == 0


def test_random_faults_are_deterministic_for_a_seed():
    def statuses(seed: int) -> list[int]:
        faults = FaultConfig(rate_429=0.3, rate_5xx=0.2, seed=seed)
        with run_simulator(faults=faults) as vsa:
            url = f"{vsa.base_url}{API}/auth"
            return [requests.get(url, auth=(vsa.user, vsa.token), timeout=10).status_code for _ in range(30)]

    first = statuses(5)
    assert first == statuses(5) and 429 in first and {500, 502, 503} & set(first) and 200 in first
    assert first != statuses(6)


def test_insert_during_paging_shifts_pages_and_grows_total():
    with run_simulator(faults=FaultConfig(insert_during_paging=1)) as vsa:
        session = login(vsa)
        page1 = get(session, vsa, "/assetmgmt/agents", **{"$orderby": "AgentName asc"}).json()
        page2 = get(session, vsa, "/assetmgmt/agents", **{"$skip": 100, "$orderby": "AgentName asc"}).json()
        assert (page1["TotalRecords"], page2["TotalRecords"]) == (300, 301)
        assert page2["Result"][0] == page1["Result"][-1]  # shifted by the new agent in front
        records, total = extract(session, vsa)  # a retry (one-shot by default) is consistent
        assert total == len({r["AgentId"] for r in records}) == 301
        assert records[0]["AgentName"].startswith("000-late-")


def test_insert_during_paging_every_extraction_never_settles():
    with run_simulator(faults=FaultConfig(insert_during_paging=2, insert_count=None)) as vsa:
        session = login(vsa)
        for _ in range(2):
            records, total = extract(session, vsa)
            assert len({r["AgentId"] for r in records}) != total


def test_latency_does_not_block_other_requests():
    with run_simulator(faults=FaultConfig(latency_ms=300)) as vsa:
        url = f"{vsa.base_url}{API}/auth"
        started = time.monotonic()
        with ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(lambda _: requests.get(url, auth=(vsa.user, vsa.token), timeout=10).status_code,
                                  range(6)))
        assert codes == [200] * 6 and time.monotonic() - started < 1.2


def test_requests_are_counted_and_tokens_never_logged(vsa, caplog):
    caplog.set_level(logging.DEBUG, logger="vsa_simulator")
    session = login(vsa)
    get(session, vsa, "/system/orgs")
    get(session, vsa, "/assetmgmt/agents", **{"$top": 1})
    assert vsa.count() == 3 and vsa.auth_calls == 1 and vsa.count(f"{API}/assetmgmt/AGENTS") == 1
    assert [r.status for r in vsa.request_log] == [200, 200, 200]
    assert vsa.request_log[-1].query == {"$top": "1"}
    bearer = session.headers["Authorization"].split()[1]
    logged = caplog.text
    assert "/system/orgs" in logged and vsa.token not in logged and bearer not in logged


# -- worlds ----------------------------------------------------------------------------


def test_generated_world_is_deterministic():
    def snapshot(seed: int) -> list[str]:
        with run_simulator(GeneratedScenario(seed=seed, orgs=4, agents=250), date=date(2024, 2, 10)) as vsa:
            session = login(vsa)
            return [get(session, vsa, path, **{"$skip": 100}).text
                    for path in ("/system/orgs", "/system/machinegroups", "/assetmgmt/agents")]

    assert snapshot(7) == snapshot(7)
    assert snapshot(7) != snapshot(8)


def test_generated_world_changes_day_by_day():
    world = GeneratedScenario(seed=3, orgs=6, agents=1500)
    with run_simulator(world) as vsa:
        session = login(vsa)
        patched = next(v["ViewDefId"] for v in get(session, vsa, "/system/views").json()["Result"]
                       if v["ViewDefName"] == "Patched this week")

        def day(d: date) -> tuple[dict[str, tuple[str, str]], set[str]]:
            vsa.set_date(d)
            agents, _ = extract(session, vsa)
            members, _ = extract(session, vsa, f"/assetmgmt/agentsinview/{patched}")
            return {a["AgentId"]: (a["MachineGroupId"], a["OrgId"]) for a in agents}, {m["AgentId"] for m in members}

        start, start_view = day(date(2024, 1, 2))
        next_day, next_view = day(date(2024, 1, 3))
        month, _ = day(date(2024, 2, 1))
    assert month.keys() - start.keys() and start.keys() - month.keys()  # adds and deletes
    common = start.keys() & month.keys()
    moved = [a for a in common if start[a] != month[a]]
    assert moved and any(start[a][1] != month[a][1] for a in moved)  # also across orgs
    changed = (start_view ^ next_view) & start.keys() & next_day.keys()
    assert any(start[a] == next_day[a] for a in changed)  # view churn without moving


SPEC: dict[str, Any] = {
    "start": "2024-03-01",
    "orgs": [{"id": "73511820644390182275501461", "ref": "contoso", "name": "Contoso Ltd"},
             {"id": "73511820644390182275501490", "ref": "fabrikam", "name": "Fabrikam Inc"}],
    "groups": [
        {"id": "73511820644390182275501462", "org": "73511820644390182275501461", "name": "root"},
        {"id": "73511820644390182275501477", "org": "73511820644390182275501461", "name": "servers",
         "parent": "73511820644390182275501462"},
        {"id": "73511820644390182275501491", "org": "73511820644390182275501490", "name": "root"},
    ],
    "views": [{"id": "55120913", "name": "Billable - Servers"}],
    "agents": [
        {"id": "902117643350088", "name": "sql01", "os": "win2019", "spans": [
            ["2024-03-01", "73511820644390182275501477", 1, ["55120913"]],
            ["2024-03-10", "73511820644390182275501462"],
            ["2024-03-20", None]]},
        {"id": "418865203377145", "name": "fin-pc07", "spans": [
            ["2024-03-05", "73511820644390182275501462", 199]]},
        {"id": "300000000000001", "name": "ops-lt01", "os": "win10", "last_seen": "2024-03-12", "spans": [
            ["2024-03-01", "73511820644390182275501462", 11],
            ["2024-03-15", "73511820644390182275501491", 0, ["55120913"]]]},
    ],
}


def test_scripted_scenario_serves_exactly_the_script():
    expected = {  # date -> {AgentId: (AgentName, MachineGroupId tail, Online)}, members of the view
        "2024-03-01": ({"902117643350088": ("sql01.servers.root.contoso", "477", 1),
                        "300000000000001": ("ops-lt01.root.contoso", "462", 11)}, {"902117643350088"}),
        "2024-03-05": ({"902117643350088": ("sql01.servers.root.contoso", "477", 1),
                        "418865203377145": ("fin-pc07.root.contoso", "462", 199),
                        "300000000000001": ("ops-lt01.root.contoso", "462", 11)}, {"902117643350088"}),
        "2024-03-10": ({"902117643350088": ("sql01.root.contoso", "462", 11),  # omitted Online: 11
                        "418865203377145": ("fin-pc07.root.contoso", "462", 199),
                        "300000000000001": ("ops-lt01.root.contoso", "462", 11)}, set()),
        "2024-03-20": ({"418865203377145": ("fin-pc07.root.contoso", "462", 199),
                        "300000000000001": ("ops-lt01.root.fabrikam", "491", 0)}, {"300000000000001"}),
    }
    with run_simulator(ScriptedScenario.from_dict(SPEC)) as vsa:
        session = login(vsa)
        assert vsa.date == date(2024, 3, 1)
        groups = get(session, vsa, "/system/machinegroups").json()["Result"]
        assert "contoso.root.servers" in {g["MachineGroupName"] for g in groups}
        for day, (agents, members) in expected.items():
            requests.post(f"{vsa.base_url}/_sim/date", json={"date": day}, timeout=10).raise_for_status()
            records, _ = extract(session, vsa)
            got = {r["AgentId"]: (r["AgentName"], r["MachineGroupId"][-3:], r["Online"]) for r in records}
            assert got == agents, day
            view, _ = extract(session, vsa, "/assetmgmt/agentsinview/55120913")
            assert {r["AgentId"] for r in view} == members, day
            never = next((r for r in records if r["Online"] == 199), None)
            assert never is None or (never["LastCheckInTime"], never["FirstCheckIn"]) == (None, None)
        stale = get(session, vsa, "/assetmgmt/agents/300000000000001").json()["Result"]
        assert stale["LastCheckInTime"].startswith("2024-03-12")


def test_scripted_scenario_from_yaml_file(tmp_path: Path):
    path = tmp_path / "world.yaml"
    path.write_text(
        "orgs: [{id: '11', ref: acme, name: Acme}]\n"
        "groups: [{id: 12, org: '11', name: root}]\n"  # an unquoted id is taken exactly
        "agents:\n  - {id: '100000000000001', name: pc1, spans: [[2024-05-01, '12']]}\n"
    )
    state = ScriptedScenario.from_file(path).state(date(2024, 5, 1))
    assert state.counts()["agents"] == 1
    assert state.agents.record(state.agents.handles[0])["AgentName"] == "pc1.root.acme"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["agents"][0]["spans"][1].__setitem__(1, "1"), "unknown group 1"),
        (lambda s: s["agents"][0]["spans"][1].__setitem__(0, "2024-02-01"), "dates must increase"),
        (lambda s: s["agents"][1].__setitem__("id", "12"), "15 digits"),
        (lambda s: s["groups"][1].__setitem__("name", "a.b"), "without dots"),
        (lambda s: s["agents"][0].__setitem__("color", "red"), "unknown keys"),
    ],
)
def test_scripted_spec_errors_point_at_the_entry(change, message):
    spec = json.loads(json.dumps(SPEC))
    change(spec)
    with pytest.raises(ScenarioError, match=message):
        ScriptedScenario.from_dict(spec)


# -- control endpoints and CLI ---------------------------------------------------------


def test_control_endpoints(vsa):
    sim = f"{vsa.base_url}/_sim"
    state = requests.get(f"{sim}/state", timeout=10).json()
    assert (state["date"], state["agents"], state["orgs"]) == ("2024-01-01", 300, 5)
    moved = requests.post(f"{sim}/date", json={"date": "2024-02-15"}, timeout=10).json()
    assert moved["date"] == "2024-02-15" and vsa.date == date(2024, 2, 15)
    assert requests.post(f"{sim}/date", json={"day": "x"}, timeout=10).status_code == 400
    assert requests.post(f"{sim}/faults", json={"fail_next": [503]}, timeout=10).json()["fail_next_pending"] == [503]
    assert requests.post(f"{sim}/faults", json={"rate_429": 3}, timeout=10).status_code == 400
    assert requests.get(f"{vsa.base_url}{API}/auth", auth=(vsa.user, vsa.token), timeout=10).status_code == 503
    assert vsa.count() == 1  # control calls are not API requests
    assert vsa.status()["fail_next_pending"] == []


def test_cli_serves_and_prints_the_connection():
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent_billing.cli", "vsa-sim", "--port", "0", "--orgs", "2", "--agents", "40",
         "--date", "2024-01-05", "--rate-429", "0.5"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        conn = json.loads(line.split("AIRFLOW_CONN_VSA_DEFAULT=", 1)[1].strip().strip("'"))
        assert conn["conn_type"] == "http" and conn["login"] == "billing.integrator"
        state = requests.get(f"{conn['host']}/_sim/state", timeout=10).json()
        assert state["date"] == "2024-01-05" and state["orgs"] == 2 and state["faults"]["rate_429"] == 0.5
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0


def test_stopped_server_refuses_connections():
    vsa = SimulatorServer(small_world()).start()
    url = f"{vsa.base_url}{API}/system/orgs"
    session = login(vsa)  # holds a keep-alive connection
    vsa.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(url, timeout=2)


def test_date_moves_shift_world_and_drop_inserted_agents():
    with run_simulator(faults=FaultConfig(insert_during_paging=1)) as vsa:
        session = login(vsa)
        get(session, vsa, "/assetmgmt/agents")
        assert vsa.status()["inserted_agents"] == 1
        vsa.set_date(date(2024, 1, 1) + timedelta(days=1))
        assert vsa.status()["inserted_agents"] == 0


def test_a_hidden_org_s_agents_vanish_from_every_answer_until_shown_again(vsa):
    """The quarantine drill (runbook): POST /_sim/hidden-orgs makes a customer's agents vanish
    from VSA, on this date and the next ones, until shown again."""
    session = login(vsa)
    agents, total = extract(session, vsa)
    per_org: dict[str, int] = {}
    for a in agents:
        per_org[a["OrgId"]] = per_org.get(a["OrgId"], 0) + 1
    org_id = max(per_org, key=per_org.get)
    [ref] = [o["OrgRef"] for o in get(session, vsa, "/system/orgs").json()["Result"] if o["OrgId"] == org_id]
    servers_view = {v["ViewDefName"]: v["ViewDefId"] for v in get(session, vsa, "/system/views").json()["Result"]}[
        "Billable - Servers"]
    servers, _ = extract(session, vsa, f"/assetmgmt/agentsinview/{servers_view}")
    hidden_agent = next(a["AgentId"] for a in agents if a["OrgId"] == org_id)
    kept_agent = next(a["AgentId"] for a in agents if a["OrgId"] != org_id)

    reply = requests.post(f"{vsa.base_url}/_sim/hidden-orgs", json={"orgs": [ref]}, timeout=10)
    assert reply.status_code == 200 and reply.json()["hidden_orgs"] == [org_id]
    first = vsa.date
    for day in (first, first + timedelta(days=1)):
        vsa.set_date(day)
        now, now_total = extract(session, vsa)
        assert now_total == len(now)
        if day == first:
            assert now_total == total - per_org[org_id]
        assert all(a["OrgId"] != org_id for a in now)
        in_view, _ = extract(session, vsa, f"/assetmgmt/agentsinview/{servers_view}")
        assert all(a["OrgId"] != org_id for a in in_view)
        assert get(session, vsa, f"/assetmgmt/agents/{hidden_agent}").status_code == 404
        assert org_id in {o["OrgId"] for o in get(session, vsa, "/system/orgs").json()["Result"]}  # the org stays
    vsa.set_date(first)
    assert get(session, vsa, f"/assetmgmt/agents/{kept_agent}").status_code == 200

    unknown = requests.post(f"{vsa.base_url}/_sim/hidden-orgs", json={"orgs": ["NOPE"]}, timeout=10)
    assert unknown.status_code == 400 and "unknown org(s) NOPE" in unknown.json()["error"]
    assert vsa.hidden_orgs == {org_id}  # a refused request changes nothing
    assert requests.post(f"{vsa.base_url}/_sim/hidden-orgs", json={"orgs": []}, timeout=10).json()["hidden_orgs"] == []
    assert extract(session, vsa)[1] == total
    assert len(extract(session, vsa, f"/assetmgmt/agentsinview/{servers_view}")[0]) == len(servers)
