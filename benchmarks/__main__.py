"""Run the benchmarks and write ``docs/benchmarks.md`` (see ``benchmarks/__init__.py``)."""

from __future__ import annotations

import importlib
import platform
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import BENCHMARKS

REPORT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
MARK = "<!-- bench:{name} -->"


def _sections(text: str) -> dict[str, str]:
    found = {}
    for name in BENCHMARKS:
        m = re.search(re.escape(MARK.format(name=name)) + r"\n(.*?)(?=\n<!-- bench:|\Z)", text, re.S)
        if m:
            found[name] = m.group(1).rstrip()
    return found


def with_notes(figures: str, old_section: str) -> str:
    """A section's new figures followed by the notes written under its old ones (from its
    first ``###`` heading on): a run rewrites the figures, never the history of what was
    measured and why."""
    at = old_section.find("\n### ")
    return figures if at < 0 else f"{figures}\n\n{old_section[at:].strip()}"


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    sections = _sections(REPORT.read_text()) if REPORT.exists() else {}
    for name in names:
        print(f"== benchmark {name}", flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        figures = module.run().rstrip()
        print(figures, flush=True)
        sections[name] = with_notes(figures, sections.get(name, ""))
    header = (
        "# Benchmarks\n\n"
        "Written by `make bench` (`python -m benchmarks [name ...]`). Machine: "
        f"{platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}; "
        f"last written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.\n"
    )
    body = "\n\n".join(MARK.format(name=n) + "\n" + sections[n] for n in BENCHMARKS if n in sections)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    tmp = REPORT.with_suffix(".tmp")
    tmp.write_text(header + "\n" + body + "\n")
    tmp.replace(REPORT)
    print(f"wrote {REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
