"""The VSA client against the simulator, over real HTTP: auth, paging, retries, drift, errors."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import pytest

from agent_billing.connections import parse_connection
from agent_billing.errors import ConfigurationError
from agent_billing.vsa import (
    InconsistentExtract,
    VsaApiError,
    VsaAuthError,
    VsaClient,
    VsaHttpError,
    VsaMalformedResponse,
    VsaRecord,
    VsaUnreachable,
    id_filter,
)
from agent_billing.vsa.auth import TokenCache, session_expiry
from vsa_simulator import FaultConfig, GeneratedScenario, ScriptedScenario
from vsa_simulator.server import SimulatorServer
from vsa_simulator.testing import run_simulator

API = "/api/v1.0"


def make_client(sim: SimulatorServer, **kwargs: Any) -> VsaClient:
    """A client with tiny backoff, so retry tests take milliseconds."""
    options: dict[str, Any] = {"backoff_base": 0.01, "backoff_max": 0.05, **kwargs}
    return VsaClient(sim.base_url, sim.user, sim.token, **options)


def calls(sim: SimulatorServer, path: str) -> int:
    return sim.count(API + path)


@pytest.fixture(scope="module")
def sim():
    """A 300-agent world shared by the read-only tests (faults are reset after each test)."""
    with run_simulator() as server:
        yield server


@pytest.fixture
def fresh(sim):
    """The shared simulator with empty counters, no faults and no inserted agents."""
    sim.set_faults(FaultConfig())
    sim.set_date(sim.date)  # drops agents inserted by faults, resets the insert budget
    sim.reset_log()
    yield sim
    sim.set_faults(FaultConfig())
    sim.set_date(sim.date)


# -- paging and records -----------------------------------------------------------------------


def test_extract_reads_every_collection_exactly(fresh):
    counts = fresh.state().counts()
    with make_client(fresh) as client:
        for resource in ("orgs", "machine_groups", "agents", "views"):
            records = client.extract(resource, list)
            assert len(records) == counts[resource] == client.count(resource)
    assert counts["agents"] > 200  # several pages
    assert fresh.auth_calls == 1
    requests = [r for r in fresh.request_log if r.path == API + "/assetmgmt/agents"]
    assert all(int(r.query["$top"]) <= 100 for r in requests)
    pages = [r for r in requests if r.query["$top"] != "1"]  # not the count
    assert all(r.query["$orderby"] == "AgentName asc" for r in pages)
    # each page after the first starts on the last record of the one before
    assert sorted(int(r.query["$skip"]) for r in pages) == list(range(0, counts["agents"] - 1, 99))


def test_records_are_dicts_with_string_ids_and_raw_json(fresh):
    with make_client(fresh) as client:
        agents = client.extract("agents", list)
        groups = client.extract("machine_groups", list)
    agent = agents[0]
    assert isinstance(agent, VsaRecord) and isinstance(agent, dict)
    assert json.loads(agent.raw)["AgentId"] == agent["AgentId"]
    assert all(isinstance(a["AgentId"], str) and a["AgentId"].isdigit() for a in agents)
    assert len({a["AgentId"] for a in agents}) == len(agents)
    assert [a["AgentName"] for a in agents] == sorted(a["AgentName"] for a in agents)
    roots = [g for g in groups if g["ParentMachineGroupId"] is None]
    assert roots and all(isinstance(g["MachineGroupId"], str) for g in groups)


def test_server_page_cap_below_top_is_followed(fresh):
    """A server answering fewer records than ``$top`` asks: the client steps by what came."""
    with make_client(fresh) as client:
        client.page_size = 250  # ask above the simulator's cap of 100
        agents = client.extract("agents", list)
    assert len(agents) == fresh.state().counts()["agents"]
    skips = sorted(int(r.query["$skip"]) for r in fresh.request_log if r.path.endswith("/agents"))
    assert skips == list(range(0, len(agents) - 1, 99))  # the server's 100, overlapping by one


Rewrite = Callable[[str, dict[str, Any]], None]  # (request target, envelope to edit in place)


class Proxy(ThreadingHTTPServer):
    """A pass-through HTTP proxy in front of a simulator: measures how many requests are in
    flight at once and can rewrite answers, using nothing but HTTP."""

    daemon_threads = True

    def __init__(self, upstream: SimulatorServer, rewrite: Rewrite | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream
        self.rewrite = rewrite
        self.in_flight = self.peak = 0
        self.gauge = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> Proxy:
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _ProxyHandler(BaseHTTPRequestHandler):
    server: Proxy

    def do_GET(self) -> None:
        proxy = self.server
        with proxy.gauge:
            proxy.in_flight += 1
            proxy.peak = max(proxy.peak, proxy.in_flight)
        try:
            upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream.port, timeout=30)
            upstream.request(
                "GET", self.path, headers={"Authorization": self.headers["Authorization"]}
            )
            answer = upstream.getresponse()
            body = answer.read()
            upstream.close()
        finally:
            with proxy.gauge:
                proxy.in_flight -= 1
        if proxy.rewrite and answer.status == 200:
            envelope = json.loads(body)
            proxy.rewrite(self.path, envelope)
            body = json.dumps(envelope).encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        pass


def test_short_page_in_the_middle_is_filled(fresh):
    """A page shorter than the others (same TotalRecords): the gap is fetched, nothing lost."""

    def shorten(target: str, envelope: dict[str, Any]) -> None:
        if "/assetmgmt/agents?" in target and "$skip=99&" in target:
            envelope["Result"] = envelope["Result"][:30]

    with Proxy(fresh, shorten) as proxy:
        client = VsaClient(proxy.base_url, fresh.user, fresh.token)
        agents = client.extract("agents", list)
    assert len(agents) == len({a["AgentId"] for a in agents}) == fresh.state().counts()["agents"]
    skips = [r.query["$skip"] for r in fresh.request_log if r.path.endswith("/agents")]
    assert "128" in skips  # the gap after the short page (from its last record, 128)


def test_an_agent_deleted_behind_the_pages_and_one_added_ahead_is_noticed(fresh):
    """While a pass pages, an agent already read is deleted and a new one sorts after every
    other: TotalRecords stays the same, every later page shifts back by one, and without the
    overlap the agent on the page boundary (position 100) was never read, the deleted one
    landed instead, on a pass reported consistent."""
    with make_client(fresh) as client:
        before = [dict(a) for a in client.extract("agents", list)]
    after = before[:5] + before[6:] + [{**before[-1], "AgentId": "999999999", "AgentName": "zzz-new"}]
    first_pages = []

    def delete_and_add(target: str, envelope: dict[str, Any]) -> None:
        if "/assetmgmt/agents?" not in target:
            return
        skip = int(target.split("$skip=")[1].split("&")[0])
        first_pages.append(skip)
        if first_pages.count(0) == 1 and skip > 0:  # the first pass only: then VSA is still again
            envelope["Result"] = after[skip:skip + len(envelope["Result"])]

    with Proxy(fresh, delete_and_add) as proxy:
        agents = VsaClient(proxy.base_url, fresh.user, fresh.token).extract("agents", list)
    assert [a["AgentId"] for a in agents] == [a["AgentId"] for a in before]  # the second pass
    assert first_pages.count(0) == 2


def test_consumer_stopping_early_still_gets_a_checked_pass(fresh):
    with make_client(fresh) as client:
        first = client.extract("agents", next)
    assert isinstance(first, VsaRecord)
    assert calls(fresh, "/assetmgmt/agents") == 4  # the rest was still read and checked


def test_counts_filters_views_and_single_agents(fresh):
    state = fresh.state()
    with make_client(fresh) as client:
        agents = client.extract("agents", list)
        groups = {a["MachineGroupId"] for a in agents}
        some = sorted(groups)[:3]
        expected = sum(1 for a in agents if a["MachineGroupId"] in some)
        assert client.count_agents(filter=id_filter("MachineGroupId", some)) == expected
        for view in client.extract("views", list):
            members = client.extract("agents_in_view", list, view_id=view["ViewDefId"])
            assert client.count_agents(view_id=view["ViewDefId"]) == len(members)
            assert len(members) == len(state.view_members(view["ViewDefId"]))
        agent = client.get_agent(agents[7]["AgentId"])
    assert agent == agents[7] and json.loads(agent.raw)["AgentName"] == agents[7]["AgentName"]


def test_id_filter():
    assert id_filter("AgentId", ["123"]) == "AgentId eq 123M"
    assert id_filter("OrgId", [1, "2"]) == "(OrgId eq 1M or OrgId eq 2M)"
    for bad in (["12a"], ["1 or 1 eq 1"], []):
        with pytest.raises(ValueError):
            id_filter("AgentId", bad)


BIG = "73511820644390182275501461"  # 26 digits: float would round it


def test_big_ids_sent_as_json_numbers_stay_exact():
    spec = {
        "start": "2024-03-01",
        "orgs": [{"id": BIG, "ref": "contoso", "name": "Contoso Ltd"}],
        "groups": [
            {"id": "73511820644390182275501462", "org": BIG, "name": "root"},
            {
                "id": "73511820644390182275501477",
                "org": BIG,
                "name": "servers",
                "parent": "73511820644390182275501462",
            },
        ],
        "views": [{"id": "55120913", "name": "Billable - Servers"}],
        "agents": [
            {
                "id": "902117643350088",
                "name": "sql01",
                "spans": [["2024-03-01", "73511820644390182275501477", 11, ["55120913"]]],
            }
        ],
    }
    with run_simulator(ScriptedScenario.from_dict(spec), ids_as_numbers=True) as sim:
        with make_client(sim) as client:
            (org,) = client.extract("orgs", list)
            groups = client.extract("machine_groups", list)
            (agent,) = client.extract("agents", list)
            (view,) = client.extract("views", list)
    assert f'"OrgId":{BIG}' in org.raw  # the server really sent a number
    assert org["OrgId"] == BIG and agent["OrgId"] == BIG
    assert agent["AgentId"] == "902117643350088" and view["ViewDefId"] == "55120913"
    assert agent["MachineGroupId"] == "73511820644390182275501477"
    assert {g["ParentMachineGroupId"] for g in groups} == {None, "73511820644390182275501462"}


# -- auth ------------------------------------------------------------------------------------


def test_reauthenticates_once_when_the_session_dies(fresh):
    fresh.set_faults(FaultConfig(session_expires_after=2))
    with make_client(fresh, max_concurrency=1) as client:
        agents = client.extract("agents", list)
    assert len(agents) == fresh.state().counts()["agents"]
    assert fresh.auth_calls == 2
    assert [r.status for r in fresh.request_log].count(401) == 1


def test_reauthenticates_after_server_side_logout(fresh):
    with make_client(fresh) as client:
        client.count("orgs")
        fresh.expire_sessions()
        assert client.count("orgs") == fresh.state().counts()["orgs"]
    assert fresh.auth_calls == 2


def test_bad_credentials_name_host_and_user_never_the_token(fresh):
    secret = "not-the-token-1f9e"
    client = VsaClient(fresh.base_url, fresh.user, secret, backoff_base=0.01)
    with pytest.raises(VsaAuthError) as err:
        client.count("orgs")
    text = str(err.value)
    assert fresh.base_url in text and fresh.user in text and "401" in text
    assert secret not in text
    assert base64.b64encode(f"{fresh.user}:{secret}".encode()).decode() not in text
    assert secret not in repr(client)
    assert fresh.auth_calls == 1  # refused credentials are not retried


def test_session_expiry_parsing():
    naive = {"SessionExpiration": "2025-05-14T09:41:27.512", "OffSetInMinutes": 420}
    assert session_expiry(naive) == datetime(2025, 5, 14, 16, 41, 27, 512000, tzinfo=UTC)
    zoned = {"SessionExpiration": "2025-05-14T09:41:27Z", "OffSetInMinutes": 420}
    assert session_expiry(zoned) == datetime(2025, 5, 14, 9, 41, 27, tzinfo=UTC)
    seven_digits = {"SessionExpiration": "2025-05-14T09:41:27.5123456"}
    assert session_expiry(seven_digits) == datetime(2025, 5, 14, 9, 41, 27, 512345, tzinfo=UTC)
    assert session_expiry({"SessionExpiration": "soon"}) is None
    assert session_expiry({}) is None


def test_token_cache_renews_before_expiry_and_once_per_refusal():
    now = [datetime(2025, 1, 1, tzinfo=UTC)]
    opened: list[str] = []

    def authenticate() -> tuple[str, datetime | None]:
        opened.append(f"t{len(opened) + 1}")
        return opened[-1], now[0] + timedelta(minutes=30)

    cache = TokenCache(authenticate, clock=lambda: now[0])
    assert cache.get() == "t1"
    now[0] += timedelta(minutes=28)
    assert cache.get() == "t1"
    now[0] += timedelta(minutes=1, seconds=1)  # within a minute of the expiry
    assert cache.get() == "t2"
    cache.invalidate("t2")
    cache.invalidate("t2")  # a second thread refused with the same token: no second session
    assert cache.get() == "t3" and cache.get() == "t3"
    cache.invalidate("t1")  # stale refusal of an old token: keep the current one
    assert cache.get() == "t3" and cache.sessions == 3


# -- retries ---------------------------------------------------------------------------------


def test_429_is_retried_after_retry_after(fresh):
    fresh.set_faults(FaultConfig(fail_next=[429], retry_after=1, fail_path="/system/orgs"))
    with make_client(fresh) as client:
        started = time.monotonic()
        assert client.count("orgs") == fresh.state().counts()["orgs"]
        elapsed = time.monotonic() - started
    assert elapsed >= 1.0  # the server's Retry-After, not the tiny backoff
    assert calls(fresh, "/system/orgs") == 2


def test_5xx_and_dropped_connections_are_retried(fresh):
    fresh.set_faults(FaultConfig(fail_next=[500, 502, "reset", 503], fail_path="/system/views"))
    with make_client(fresh) as client:
        views = client.extract("views", list)
    assert len(views) == fresh.state().counts()["views"]
    assert calls(fresh, "/system/views") == 5


def test_retries_are_bounded(fresh):
    fresh.set_faults(FaultConfig(rate_5xx=1.0, fail_next=[200]))  # auth passes, then all fail
    with make_client(fresh, max_retries=2) as client, pytest.raises(VsaHttpError) as err:
        client.count("orgs")
    assert err.value.status in (500, 502, 503) and err.value.transient
    assert calls(fresh, "/system/orgs") == 3


@pytest.mark.parametrize(
    ("call", "status", "path"),
    [
        (lambda c: c.get_agent("123456789012345"), 404, "/assetmgmt/agents/123456789012345"),
        (lambda c: c.count_agents(filter="NoSuchField eq 1"), 400, "/assetmgmt/agents"),
    ],
)
def test_other_4xx_are_not_retried(fresh, call, status, path):
    with make_client(fresh) as client, pytest.raises(VsaHttpError) as err:
        call(client)
    assert err.value.status == status and not err.value.transient
    assert calls(fresh, path) == 1
    assert fresh.base_url in str(err.value) and path.split("/")[-1] in str(err.value)


def test_404_carries_the_server_error_text(fresh):
    with make_client(fresh) as client, pytest.raises(VsaHttpError) as err:
        client.get_agent("123456789012345")
    assert "Agent with id 123456789012345 was not found." in str(err.value)


def test_error_inside_http_200_raises_with_the_server_text(fresh):
    fresh.set_faults(FaultConfig(error_in_200_rate=1.0, fail_next=[200]))
    with make_client(fresh, max_retries=1) as client, pytest.raises(VsaApiError) as err:
        client.count("orgs")
    assert err.value.error == "An unexpected error occurred while processing the request."
    assert str(err.value.response_code) == "500" and err.value.error in str(err.value)


def test_error_inside_http_200_with_a_server_code_is_retried(fresh):
    fresh.set_faults(FaultConfig(fail_next=["error_in_200"], fail_path="/system/orgs"))
    with make_client(fresh) as client:
        assert client.count("orgs") == fresh.state().counts()["orgs"]
    assert calls(fresh, "/system/orgs") == 2


def test_malformed_body_is_retried_then_reported(fresh):
    fresh.set_faults(FaultConfig(fail_next=["malformed"], fail_path="/system/orgs"))
    with make_client(fresh) as client:
        assert len(client.extract("orgs", list)) == fresh.state().counts()["orgs"]
        assert calls(fresh, "/system/orgs") == 2
    fresh.set_faults(FaultConfig(malformed_rate=1.0, fail_next=[200]))  # auth passes
    with make_client(fresh, max_retries=1) as client, pytest.raises(VsaMalformedResponse) as err:
        client.count("views")
    assert calls(fresh, "/system/views") == 2
    assert "malformed response" in str(err.value) and "/system/views" in str(err.value)


@pytest.mark.parametrize(("field", "value"), [
    ("OrgId", "not-an-id"), ("OrgId", "-5"), ("OrgId", "4188.5"), ("OrgId", "1" * 27), ("OrgId", -5),
    ("OrgId", [1, 2]), ("ParentOrgId", {"id": "1"}), ("OrgId", "\u0661\u0662"),
])
def test_an_id_that_is_not_a_vsa_id_is_a_malformed_answer(field, value):
    """VSA ids are decimal strings of up to 26 digits (SPEC 3): an answer with another id is
    refused at the API's edge, naming the field, so no night lands it."""
    def answer(handler):
        send(handler, 200, {"TotalRecords": 1, "ResponseCode": 0, "Status": "OK", "Error": "None",
                            "Result": [{"OrgId": "1", "OrgName": "Contoso", field: value}]})

    with StandIn(answer) as vsa, vsa.client(max_retries=1) as client, pytest.raises(VsaMalformedResponse) as err:
        client.extract("orgs", list)
    assert f"{field}: " in str(err.value) and "not a" in str(err.value) and "\n" not in str(err.value)


def test_unreachable_host_is_a_clear_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nobody listens
    client = VsaClient(
        f"http://127.0.0.1:{port}", "someone", "tok-secret-77", max_retries=1, backoff_base=0.01
    )
    with pytest.raises(VsaUnreachable) as err:
        client.count("orgs")
    text = str(err.value)
    assert f"127.0.0.1:{port}" in text and "someone" in text and "tok-secret-77" not in text
    assert "\n" not in text


# -- consistency -----------------------------------------------------------------------------


def test_drift_during_paging_is_retried_and_the_retry_is_clean(fresh):
    fresh.set_faults(FaultConfig(insert_during_paging=1, insert_count=1))
    passes: list[int] = []

    def consume(records):
        passes.append(0)
        return [r["AgentId"] for r in records]

    with make_client(fresh) as client:
        ids = client.extract("agents", consume)
    assert len(passes) == 2
    assert len(ids) == len(set(ids)) == fresh.state().counts()["agents"] + 1  # with the newcomer


def test_persistent_drift_raises_inconsistent_extract(fresh):
    fresh.set_faults(FaultConfig(insert_during_paging=1, insert_count=None))
    with make_client(fresh, extract_attempts=2) as client:
        with pytest.raises(InconsistentExtract) as err:
            client.extract("agents", list)
        with pytest.raises(InconsistentExtract):
            list(client.iter_agents())  # a single pass: no retry
    text = str(err.value)
    assert "2 passes" in text and "/assetmgmt/agents" in text and "expected" in text
    assert err.value.expected is not None and err.value.seen is not None
    assert err.value.transient  # VSA settles: an Airflow task keeps its retries (fail_fast)


# -- configuration ---------------------------------------------------------------------------


def test_from_connection_uri_and_json_forms():
    uri = parse_connection(
        "vsa_default",
        "http://billing.integrator:p%40t@127.0.0.1:8765?page_size=50&verify_ssl=false&timeout=5",
    )
    client = VsaClient.from_connection(uri)
    assert client.base_url == "http://127.0.0.1:8765" and client.user == "billing.integrator"
    assert (client.page_size, client.verify_ssl, client.timeout) == (50, False, 5.0)
    as_json = parse_connection(
        "vsa_default",
        '{"conn_type": "vsa", "host": "https://vsa.example.com/api/v1.0/", "login": "u",'
        ' "password": "p", "extra": {"max_concurrency": 4, "page_size": 500}}',
    )
    client = VsaClient.from_connection(as_json)
    assert client.base_url == "https://vsa.example.com" and client.max_concurrency == 4
    assert client.page_size == 100 and client.verify_ssl is True
    bare = VsaClient.from_connection(
        parse_connection(
            "x", '{"host": "vsa.example.com", "port": 8443, "login": "u", "password": "p"}'
        )
    )
    assert bare.base_url == "https://vsa.example.com:8443"


@pytest.mark.parametrize("connection", [
    '{"conn_type": "http", "host": "vsa.example.com", "login": "u", "password": "tok-secret-77"}',
    '{"conn_type": "http", "host": "http://10.1.2.3:8080", "login": "u", "password": "tok-secret-77"}',
    "http://u:tok-secret-77@vsa.example.com",
])
def test_plain_http_to_another_machine_is_refused_before_the_token_is_sent(connection):
    """The token goes out on the first request: over plain HTTP to another machine it would
    cross the network in clear (a host written without https:// takes its scheme from
    ``conn_type``, and Airflow's HTTP connection type is ``http``)."""
    with pytest.raises(ConfigurationError, match=r"is plain HTTP: the personal access token would cross the "
                                                 r"network unencrypted; use https://") as refused:
        VsaClient.from_connection(parse_connection("vsa_default", connection))
    assert "tok-secret-77" not in str(refused.value)


def test_plain_http_is_taken_on_this_machine_or_when_allowed_in_so_many_words():
    for host in ("http://127.0.0.1:8765", "http://localhost:8765", "http://[::1]:8765"):
        assert VsaClient(host, "u", "p").base_url == host
    allowed = parse_connection("vsa_default", '{"conn_type": "http", "host": "http://vsa-sim:8765", "login": "u",'
                                              ' "password": "p", "extra": {"allow_plain_http": "true"}}')
    assert VsaClient.from_connection(allowed).base_url == "http://vsa-sim:8765"
    # a word that is neither yes nor no is refused, not read as yes
    unclear = parse_connection("vsa_default", '{"conn_type": "http", "host": "http://10.1.2.3", "login": "u",'
                                              ' "password": "tok-secret-77", "extra": {"allow_plain_http": "nope"}}')
    with pytest.raises(ConfigurationError, match=r"^connection 'vsa_default': extra allow_plain_http='nope' is "
                                                 r"neither true nor false \(write true or false\)$"):
        VsaClient.from_connection(unclear)
    # what the simulator prints when it listens beyond this machine is taken as it is
    with run_simulator(GeneratedScenario(seed=7, orgs=1, agents=5), host="0.0.0.0") as sim:
        assert VsaClient.from_connection(parse_connection("vsa_default", sim.connection_json())).count("agents") == 5


def test_from_env_against_the_simulator(fresh, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", fresh.connection_json())
    with VsaClient.from_env() as client:
        assert client.count("agents") == fresh.state().counts()["agents"]


# -- concurrency -----------------------------------------------------------------------------


def test_concurrency_is_bounded_and_used():
    world = GeneratedScenario(seed=7, orgs=4, agents=2000)
    with run_simulator(world, faults=FaultConfig(latency_ms=40)) as sim, Proxy(sim) as proxy:
        client = VsaClient(proxy.base_url, sim.user, sim.token, max_concurrency=3)
        started = time.monotonic()
        agents = client.extract("agents", list)
        elapsed = time.monotonic() - started
        assert len(agents) == sim.state().counts()["agents"]
        pages = -(-len(agents) // 100)
    assert proxy.peak == 3  # the server saw exactly the bound in flight, never more
    assert elapsed >= (1 + (pages - 1) / 3) * 0.04 * 0.9  # and no faster than 3 at a time


def test_sessions_used_up_by_concurrent_requests_are_renewed_not_reported_as_refused(fresh):
    """A server that ends a session after one request, with 8 requests in flight: a 401 on a
    session other requests used first is a used-up session, renewed and repeated; the extract
    completes instead of failing with 'refused a fresh session'."""
    fresh.set_faults(FaultConfig(session_expires_after=1, latency_ms=20))
    with make_client(fresh, max_concurrency=8, page_size=20) as client:
        agents = client.extract("agents", list)
    assert len(agents) == fresh.state().counts()["agents"]
    pages = -(-len(agents) // 20)
    assert fresh.auth_calls >= pages  # one session per successful request


def test_a_hung_vsa_fails_within_the_retry_deadline(fresh, caplog):
    """Every request hangs: the request gives up after retry_deadline, not after
    (max_retries + 1) timeouts."""
    fresh.set_faults(FaultConfig(latency_ms=5_000))
    client = VsaClient(fresh.base_url, fresh.user, fresh.token, timeout=0.5, max_retries=50,
                       backoff_base=0.01, backoff_max=0.01, retry_deadline=1.2)
    caplog.set_level(logging.WARNING, logger="agent_billing.vsa.client")
    with client, pytest.raises(VsaUnreachable, match="no response within 0.5s"):
        client.count("orgs")
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert 1 <= len(retries) <= 3, len(retries)  # ~1.2 s of 0.5 s attempts, not the 51 allowed


# -- answers the simulator does not give: a stand-in server --------------------------------


Answer = Callable[[BaseHTTPRequestHandler], None]  # writes the whole answer to one API request


class StandIn(ThreadingHTTPServer):
    """A VSA stand-in over real HTTP: ``/auth`` opens a session (or is answered by ``auth``),
    every other request is answered by ``answer``; ``requests`` counts the API requests after
    ``/auth``."""

    daemon_threads = True

    def __init__(self, answer: Answer, auth: Answer | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _StandInHandler)
        self.answer = answer
        self.auth = auth
        self.requests = 0

    def client(self, **options: Any) -> VsaClient:
        return VsaClient(f"http://127.0.0.1:{self.server_address[1]}", "someone", "tok-secret-77",
                         backoff_base=0.01, backoff_max=0.01, **options)

    def __enter__(self) -> StandIn:
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _StandInHandler(BaseHTTPRequestHandler):
    server: StandIn

    def do_GET(self) -> None:
        if self.path.lower().startswith(API + "/auth"):
            if self.server.auth:
                self.server.auth(self)
            else:
                send(self, 200, {"Result": {"Token": "session-1"}, "ResponseCode": 0, "Status": "OK"})
            return
        self.server.requests += 1
        self.server.answer(self)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        pass


def send(handler: BaseHTTPRequestHandler, status: int, payload: Any = None, body: bytes | None = None,
         **headers: str) -> None:
    body = json.dumps(payload).encode() if body is None else body
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


def orgs_page(code: Any = 0) -> dict[str, Any]:
    return {"TotalRecords": 1, "Result": [{"OrgId": "1", "OrgName": "Contoso"}], "ResponseCode": code,
            "Status": "OK", "Error": "None"}


def test_an_answer_sent_a_byte_at_a_time_gives_up_at_the_retry_deadline():
    """Each byte arrives within ``timeout``, so only a deadline on the whole answer ends the
    request: the runbook's "a request gives up after retry_deadline" (it hung for hours)."""

    def drip(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        try:
            for _ in range(1000):
                handler.wfile.write(b" ")
                handler.wfile.flush()
                time.sleep(0.1)
        except OSError:  # the client gave up
            pass

    with StandIn(drip) as vsa, vsa.client(timeout=0.5, retry_deadline=1.0, max_retries=5) as client:
        started = time.monotonic()
        with pytest.raises(VsaUnreachable, match=r"the answer did not arrive within 1s \(\d+ bytes so far\)"):
            client.count("orgs")
        assert time.monotonic() - started < 4
    assert vsa.requests == 1  # the deadline is spent: no retry


@pytest.mark.parametrize("location", ["https://vsa.elsewhere.example/api/v1.0/system/orgs", None])
def test_a_redirect_is_refused_naming_where_it_leads(location):
    """``requests`` would follow it and drop the credentials on another host (the user got
    "authentication refused ... check the token"), or loop until "Exceeded 30 redirects"
    reported as a landing that cannot be written."""

    def redirect(handler: BaseHTTPRequestHandler) -> None:
        send(handler, 302, {}, Location=location or handler.path)

    with StandIn(redirect) as vsa, vsa.client() as client:
        with pytest.raises(VsaHttpError) as err:
            client.count("orgs")
    where = location or "/api/v1.0/system/orgs"
    assert f"HTTP 302: VSA redirects to {where}" in str(err.value) and "tok-secret-77" not in str(err.value)
    assert vsa.requests == 1  # not retried: it will not change by itself


def test_a_body_its_content_encoding_cannot_decode_is_a_malformed_answer_retried():
    def bad_gzip(handler: BaseHTTPRequestHandler) -> None:
        send(handler, 200, body=b"this is not gzip", Content_Encoding="gzip")

    with StandIn(bad_gzip) as vsa, vsa.client(max_retries=2) as client:
        with pytest.raises(VsaMalformedResponse, match="unreadable answer: .*GET /system/orgs"):
            client.count("orgs")
    assert vsa.requests == 3


@pytest.mark.parametrize("code", [0, "0", 200, "200"])
def test_response_codes_vsa_reads_as_success_are_success(code):
    with StandIn(lambda handler: send(handler, 200, orgs_page(code))) as vsa, vsa.client() as client:
        assert client.count("orgs") == 1


def test_a_server_fault_inside_http_200_on_auth_is_retried_not_called_a_bad_token(fresh):
    """VSA's passing trouble on /auth (ResponseCode 500 inside HTTP 200) is retried like on any
    other endpoint: it is not "authentication refused", which sends on-call to rotate a token
    that works."""
    fresh.set_faults(FaultConfig(fail_next=["error_in_200"], fail_path="/auth"))
    with make_client(fresh) as client:
        assert client.count("orgs") == fresh.state().counts()["orgs"]
    assert calls(fresh, "/auth") == 2


# -- credentials never shown ---------------------------------------------------------------------


def test_a_session_token_that_cannot_go_back_in_a_header_is_refused_without_being_shown(caplog):
    """A proxy that adds a newline to the token: ``requests`` would refuse the header and quote
    the token in its error, which went to the log, the run's message and the data team's mail."""

    def token_with_newline(handler: BaseHTTPRequestHandler) -> None:
        send(handler, 200, {"Result": {"Token": "SESSTOK-SECRET-123\n"}, "ResponseCode": 0})

    caplog.set_level(logging.DEBUG)
    with StandIn(lambda handler: send(handler, 200, orgs_page()), auth=token_with_newline) as vsa, \
            vsa.client(max_retries=1) as client, pytest.raises(VsaMalformedResponse) as err:
        client.count("orgs")
    assert "session token with spaces or control characters" in str(err.value)
    assert vsa.requests == 0  # the token was never sent
    for text in (str(err.value), caplog.text):
        assert "SESSTOK-SECRET" not in text


def test_an_error_text_quoting_the_credentials_it_received_never_shows_them(caplog):
    """A server or proxy that copies the ``Authorization`` header into its error text: the
    PAT's Basic credentials on ``/auth``, the session token on any other request."""

    def quote_basic(handler: BaseHTTPRequestHandler) -> None:
        header = handler.headers["Authorization"]
        send(handler, 401, {"Error": f"bad credentials in header {header}", "ResponseCode": 401})

    def quote_bearer(handler: BaseHTTPRequestHandler) -> None:
        header = handler.headers["Authorization"]
        send(handler, 200, {"Error": f"cannot serve {header}", "ResponseCode": 500})

    def open_session(handler: BaseHTTPRequestHandler) -> None:
        send(handler, 200, {"Result": {"Token": "SESSTOK-SECRET-123"}, "ResponseCode": 0})

    caplog.set_level(logging.DEBUG)
    basic = base64.b64encode(b"someone:tok-secret-77").decode()
    with StandIn(lambda handler: None, auth=quote_basic) as vsa, vsa.client() as client, \
            pytest.raises(VsaAuthError) as refused:
        client.count("orgs")
    assert "bad credentials in header Basic ***" in str(refused.value)
    with StandIn(quote_bearer, auth=open_session) as vsa, vsa.client(max_retries=1) as client, \
            pytest.raises(VsaApiError) as failed:
        client.count("orgs")
    assert vsa.requests == 2  # tried, retried, then failed
    assert "cannot serve Bearer ***" in str(failed.value) and failed.value.error == "cannot serve Bearer ***"
    for text in (str(refused.value), str(failed.value), caplog.text):
        assert basic not in text and "tok-secret-77" not in text and "SESSTOK-SECRET" not in text

    def quote_late_and_encoded(handler: BaseHTTPRequestHandler) -> None:
        """The header across the 300th character, where the error text is cut, and URL-encoded."""
        header = handler.headers["Authorization"]
        send(handler, 401, {"Error": "x" * 285 + f" {header} / {quote(header, safe='')}", "ResponseCode": 401})

    with StandIn(lambda handler: None, auth=quote_late_and_encoded) as vsa, vsa.client() as client, \
            pytest.raises(VsaAuthError) as cut:
        client.count("orgs")
    assert "Basic ***" in str(cut.value) and basic[:8] not in str(cut.value)
    with StandIn(lambda handler: None, auth=quote_late_and_encoded) as vsa, vsa.client() as client:
        vsa.auth = lambda handler: send(handler, 401, {  # the rest of it, URL-encoded
            "Error": f"bad {quote(handler.headers['Authorization'], safe='')}", "ResponseCode": 401})
        with pytest.raises(VsaAuthError) as encoded:
            client.count("orgs")
    assert "bad Basic%20***" in str(encoded.value) and basic[:8] not in str(encoded.value)
