"""``agent-billing vsa probe``, run as the real console script against a simulator."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from vsa_simulator.testing import run_simulator

CLI = Path(sys.executable).parent / "agent-billing"


@pytest.fixture(scope="module")
def sim():
    with run_simulator() as server:
        yield server


def probe(conn: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW_CONN_VSA_DEFAULT"}
    if conn is not None:
        env["AIRFLOW_CONN_VSA_DEFAULT"] = conn
    return subprocess.run(
        [str(CLI), "vsa", "probe"], env=env, capture_output=True, text=True, timeout=60
    )


def test_probe_prints_the_counts_as_one_json_line(sim):
    done = probe(sim.connection_json())
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == sim.state().counts()
    assert list(json.loads(lines[0])) == ["orgs", "machine_groups", "agents", "views"]


def test_probe_with_bad_credentials_fails_clearly(sim):
    secret = "bad-pat-0c4e9a"
    conn = json.loads(sim.connection_json()) | {"password": secret}
    done = probe(json.dumps(conn))
    assert done.returncode != 0 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("agent-billing vsa probe: error: authentication refused")
    assert sim.base_url in line and sim.user in line and secret not in line


def test_probe_with_unreachable_host_fails_clearly():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    secret = "pat-never-shown-77"
    conn = {
        "conn_type": "http",
        "host": f"http://127.0.0.1:{port}",
        "login": "billing.integrator",
        "password": secret,
        "extra": {"max_retries": 0},
    }
    done = probe(json.dumps(conn))
    assert done.returncode != 0
    (line,) = done.stderr.splitlines()
    assert "cannot reach VSA" in line and f"127.0.0.1:{port}" in line
    assert "billing.integrator" in line and secret not in line


def test_probe_without_a_connection_says_what_to_set():
    done = probe(None)
    assert done.returncode != 0 and "AIRFLOW_CONN_VSA_DEFAULT" in done.stderr
