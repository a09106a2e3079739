"""Ctrl-C ends a command with one line saying what it left, and exit 130 (README)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time


def test_ctrl_c_says_what_was_left_in_one_line(sqlite_warehouse_url):
    with socket.socket() as silent:  # a VSA that takes the connection and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        vsa = json.dumps({"conn_type": "http", "host": f"http://127.0.0.1:{silent.getsockname()[1]}",
                          "login": "integrator", "password": "token"})
        env = {**os.environ, "AIRFLOW_CONN_VSA_DEFAULT": vsa, "AIRFLOW_CONN_BILLING_WAREHOUSE": sqlite_warehouse_url}
        command = subprocess.Popen([sys.executable, "-m", "agent_billing.cli", "vsa", "probe"], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        silent.settimeout(60)
        connection, _ = silent.accept()  # the command is waiting for VSA's answer now
        time.sleep(0.2)
        command.send_signal(signal.SIGINT)
        out, err = command.communicate(timeout=60)
        connection.close()
    assert command.returncode == 130
    assert err.splitlines() == ["agent-billing vsa probe: interrupted: the step in progress was rolled back, what "
                                "finished before it is kept; run the command again to complete it"]
    assert out == ""
