"""Benchmarks (``make bench``): speed and memory figures written to ``docs/benchmarks.md``.

Each module listed in ``BENCHMARKS`` exposes ``run() -> str`` returning a Markdown section;
``python -m benchmarks [name ...]`` runs them (all by default) and rewrites the report, keeping
the sections of benchmarks that were not run this time.
"""

BENCHMARKS = ("vsa_extract", "sync_load", "unit_history", "billing_run", "demo_nights")
