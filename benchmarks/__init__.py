"""Benchmarks (``make bench``): speed and memory figures written to ``docs/benchmarks.md``.

Each module listed in ``BENCHMARKS`` exposes ``run() -> str`` returning a Markdown section;
``python -m benchmarks [name ...]`` runs them (all by default) and rewrites the report, keeping
the sections of benchmarks that were not run this time. The benchmarks that need PostgreSQL
create and drop their own databases on the server of ``AGENT_BILLING_BENCH_PG_URL`` (default:
the local server, trust auth).
"""

import os

BENCHMARKS = ("vsa_extract", "sync_load", "unit_history", "billing_run", "demo_nights")
PG_ADMIN_URL = os.environ.get(
    "AGENT_BILLING_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def settle_postgres(engine) -> None:
    """VACUUM ANALYZE and a checkpoint before a timed run, so that no autovacuum or checkpoint
    of a bulk fill runs in its background: a benchmark writes in minutes what a real warehouse
    writes over months."""
    from sqlalchemy import text

    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
        conn.execute(text("CHECKPOINT"))
