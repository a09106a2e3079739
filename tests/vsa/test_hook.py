"""VsaHook: the client from Airflow's ``vsa_default`` connection, and the UI "Test" button."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from agent_billing.vsa import VsaClient
from vsa_simulator.testing import run_simulator

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
if str(PLUGINS) not in sys.path:  # Airflow puts it there when it loads plugins
    sys.path.insert(0, str(PLUGINS))

from agent_billing_plugin import HOOKS, AgentBillingPlugin  # noqa: E402
from vsa_hook import VsaHook  # noqa: E402


@pytest.fixture(scope="module")
def sim():
    with run_simulator() as server:
        yield server


def uri_for(sim, token: str, **extra: object) -> str:
    host = sim.base_url.removeprefix("http://")
    query = "&".join(f"{k}={v}" for k, v in extra.items())
    return f"http://{quote(sim.user, safe='')}:{quote(token, safe='')}@{host}" + (
        f"?{query}" if query else ""
    )


def test_hook_from_uri_connection(sim, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", uri_for(sim, sim.token, page_size=50))
    client = VsaHook().get_conn()
    assert isinstance(client, VsaClient)
    assert (client.base_url, client.user, client.page_size) == (sim.base_url, sim.user, 50)
    with client:
        assert client.count_agents() == sim.state().counts()["agents"]


def test_hook_from_json_connection_with_another_id(sim, monkeypatch):
    conn = json.loads(sim.connection_json())
    conn["extra"] = {"max_concurrency": 2, "verify_ssl": "false"}
    monkeypatch.setenv("AIRFLOW_CONN_VSA_NIGHTLY", json.dumps(conn))
    with VsaHook(vsa_conn_id="vsa_nightly").get_conn() as client:
        assert (client.max_concurrency, client.verify_ssl) == (2, False)
        assert len(client.extract("orgs", list)) == sim.state().counts()["orgs"]


def test_test_connection_reports_success_and_failure(sim, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", sim.connection_json())
    ok, message = VsaHook().test_connection()
    assert ok and f"{sim.state().counts()['orgs']} organizations" in message

    secret = "wrong-token-5d21"
    monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", uri_for(sim, secret))
    ok, message = VsaHook().test_connection()
    assert not ok
    assert sim.base_url in message and sim.user in message and secret not in message


def test_test_connection_answers_quickly_when_vsa_is_down(monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nobody listens once the block ends
    conn = {"conn_type": "vsa", "host": f"http://127.0.0.1:{port}", "login": "u", "password": "p1"}
    monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", json.dumps(conn))
    started = time.monotonic()
    ok, message = VsaHook().test_connection()
    assert not ok and "cannot reach VSA" in message and f"127.0.0.1:{port}" in message
    assert time.monotonic() - started < 5  # no retries with backoff behind the UI button


def test_hook_metadata_and_plugin():
    assert (VsaHook.conn_name_attr, VsaHook.default_conn_name) == ("vsa_conn_id", "vsa_default")
    assert (VsaHook.conn_type, VsaHook.hook_name) == ("vsa", "Kaseya VSA")
    labels = VsaHook.get_ui_field_behaviour()["relabeling"]
    assert labels == {"host": "Base URL", "login": "User", "password": "Personal access token"}
    assert VsaHook in HOOKS and AgentBillingPlugin.name == "agent_billing"
