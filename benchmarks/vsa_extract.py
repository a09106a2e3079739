"""Benchmark: extract 100,000 agents at 200 ms per request, 8 requests in flight.

The simulator (``agent-billing vsa-sim``) and the client each run in their own process, so the
client's peak RSS and CPU are its own. Paging is latency-bound: the best possible wall time
is pages × latency ÷ concurrency; the target is to stay within 1.3 × that bound and under
300 MB of resident memory while streaming every record through a consumer.

``python -m benchmarks.vsa_extract`` is the client side (reads ``AIRFLOW_CONN_VSA_DEFAULT``,
prints one JSON line); ``run()`` drives both and returns the report section.
"""

from __future__ import annotations

import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

AGENTS = 100_000
LATENCY_MS = 200
CONCURRENCY = 8
PAGE_SIZE = 100
MAX_RATIO = 1.3
MAX_RSS_MB = 300
ROOT = Path(__file__).resolve().parents[1]
SIMULATOR = (
    f"-m agent_billing.cli vsa-sim --port 0 --orgs 200 --agents {AGENTS} --latency-ms {LATENCY_MS}"
).split()


def run() -> str:
    with tempfile.TemporaryFile("w+") as sim_log:
        sim = subprocess.Popen(
            [sys.executable, *SIMULATOR],
            stdout=subprocess.PIPE,
            stderr=sim_log,
            text=True,
            cwd=ROOT,
        )
        try:
            conn = _wait_for_simulator(sim, sim_log)
            conn["extra"] = {"max_concurrency": CONCURRENCY, "page_size": PAGE_SIZE}
            env = {**os.environ, "AIRFLOW_CONN_VSA_DEFAULT": json.dumps(conn)}
            child = subprocess.run(
                [sys.executable, "-m", "benchmarks.vsa_extract"],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if child.returncode != 0:
                raise RuntimeError(f"the extract failed:\n{child.stderr[-2000:]}")
            result = json.loads(child.stdout.strip().splitlines()[-1])
            with urllib.request.urlopen(conn["host"] + "/_sim/state", timeout=10) as answer:
                requests = json.load(answer)["api_requests"]
        finally:
            sim.terminate()
            sim.wait(timeout=30)
    return _report(result, requests)


def _wait_for_simulator(sim: subprocess.Popen[str], log: IO[str]) -> dict[str, Any]:
    """The simulator prints its ``AIRFLOW_CONN_VSA_DEFAULT`` once the world is built."""
    assert sim.stdout is not None
    line = sim.stdout.readline()
    match = re.search(r"AIRFLOW_CONN_VSA_DEFAULT='(.*)'", line)
    if not match:
        log.seek(0)
        raise RuntimeError(f"the simulator did not start: {line}{log.read()[-2000:]}")
    return json.loads(match.group(1))


def _report(result: dict[str, Any], requests: int) -> str:
    pages = math.ceil(result["records"] / PAGE_SIZE)
    bound = pages * LATENCY_MS / 1000 / CONCURRENCY
    ratio = result["seconds"] / bound
    rss = result["peak_rss_mb"]
    met = ratio <= MAX_RATIO and rss < MAX_RSS_MB and result["records"] == result["expected"]
    return "\n".join(
        [
            "## VSA extract",
            "",
            f'`VsaClient.extract("agents", …)` against `agent-billing vsa-sim` ({AGENTS:,} agents,'
            f" {LATENCY_MS} ms latency per request), {CONCURRENCY} requests in flight, records"
            " counted and discarded; simulator and client in separate processes.",
            "",
            "| metric | value | target |",
            "|---|---|---|",
            f"| agents extracted (TotalRecords) | {result['records']:,} ({result['expected']:,})"
            " | all, distinct |",
            f"| pages / API requests seen by the server | {pages:,} / {requests:,} | |",
            f"| wall time (after authentication) | {result['seconds']:.1f} s | |",
            f"| bound: pages × latency ÷ concurrency | {bound:.1f} s | |",
            f"| ratio | {ratio:.2f} | ≤ {MAX_RATIO} |",
            f"| client CPU time | {result['cpu_seconds']:.1f} s | |",
            f"| client peak RSS (baseline after imports) | {rss:.0f} MB ({result['base_rss_mb']:.0f}"
            f" MB) | < {MAX_RSS_MB} MB |",
            "",
            f"target met: {'yes' if met else 'no'}",
        ]
    )


def _child() -> None:
    """The client process: authenticate, then time one consistent extract of every agent."""
    from agent_billing.vsa import VsaClient

    def count(records: Iterator[object]) -> int:
        return sum(1 for _ in records)

    with VsaClient.from_env() as client:
        client.authenticate()
        expected = client.count_agents()
        base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        cpu = time.process_time()
        started = time.perf_counter()
        records = client.extract("agents", count)
        seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "records": records,
                "expected": expected,
                "seconds": seconds,
                "cpu_seconds": time.process_time() - cpu,
                "base_rss_mb": base_rss,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    _child()
