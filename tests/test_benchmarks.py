"""`make bench` keeps working as the code moves: the PostgreSQL benchmarks run end to end at a
small size (their figures mean nothing here; only that each runs, measures what it names, and
cleans up after itself). The benchmarks reach into the code's internals (the load's reader, the
rules' rows), so a rename breaks them where no other test looks."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from .conftest import ROOT

SMALL = {
    "billing_run": {"BENCH_BILLING_SERVICES": "140,280"},
    "sync_load": {"BENCH_SYNC_AGENTS": "3000"},
    "unit_history": {"BENCH_HISTORY_SERVICES": "64", "BENCH_HISTORY_DAYS": "6"},
}


def _databases(admin) -> set[str]:
    with admin.connect() as conn:
        return set(conn.execute(text("SELECT datname FROM pg_database WHERE datname LIKE '%bench%'")).scalars())


@pytest.mark.parametrize("name", sorted(SMALL))
def test_a_benchmark_runs_at_a_small_size_and_leaves_no_database(name, pg_admin, tmp_path):
    admin_url = make_url(pg_admin.url).set(database="postgres").render_as_string(hide_password=False)
    before = _databases(pg_admin)
    env = {**os.environ, **SMALL[name], "AGENT_BILLING_BENCH_PG_URL": admin_url, "TMPDIR": str(tmp_path)}
    # run() returns the report's section; the report itself (docs/benchmarks.md) is not touched
    code = f"import benchmarks.{name} as b; print(b.run())"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    section = run.stdout
    assert section.startswith("## ") and re.search(r"[Tt]arget met: \**(yes|no)", section), section[-2000:]
    if name == "sync_load":
        assert re.search(r"\| day 2: load \| 3,\d{3} \|", section), section
    elif name == "billing_run":
        assert re.search(r"^\| 140 \| 2 \|", section, re.M) and re.search(r"^\| 280 \| 4 \|", section, re.M), section
    else:
        assert re.search(r"\| postgresql \| diff \|", section) and re.search(r"\| sqlite \| press \|", section), section
    assert _databases(pg_admin) == before


def test_a_run_rewrites_a_sections_figures_and_keeps_the_notes_under_them():
    from benchmarks.__main__ import with_notes

    old = "## Billing run\n\n| old figures |\n\n### Stop 28: why\n\nnotes\n\n### Stop 27\n\nmore"
    assert with_notes("## Billing run\n\n| new figures |", old) == (
        "## Billing run\n\n| new figures |\n\n### Stop 28: why\n\nnotes\n\n### Stop 27\n\nmore")
    assert with_notes("## Billing run\n\n| new |", "## Billing run\n\n| old |") == "## Billing run\n\n| new |"
    assert with_notes("## Billing run\n\n| new |", "") == "## Billing run\n\n| new |"
