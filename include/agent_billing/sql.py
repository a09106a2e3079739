"""SQL kept as files under ``include/sql``: loaded once, always executed with bound parameters.

A file may include another, a rule that two statements share, with ``/*include <name>*/``; it is
replaced by the other file's text in parentheses.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from sqlalchemy import TextClause, text


def _sql_dir() -> Path:
    """``include/sql`` of a source checkout, or its copy inside a built wheel (``sql_files``)."""
    package = Path(__file__).resolve().parent
    shipped = package / "sql_files"
    return shipped if shipped.is_dir() else package.parent / "sql"


SQL_DIR = _sql_dir()
_INCLUDE = re.compile(r"/\*include\s+(\S+?)\s*\*/")


@cache
def load_sql(name: str) -> TextClause:
    """Return ``include/sql/<name>`` as a SQLAlchemy text clause (``:name`` parameters)."""
    return text(sql_source(name))


@cache
def sql_source(name: str) -> str:
    """The text of ``include/sql/<name>`` with its includes expanded and whole-line comments
    dropped (``text()`` would read a ``:name`` in them as a parameter)."""
    path = SQL_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"SQL file not found: {path}")
    lines = path.read_text(encoding="utf-8").splitlines()
    source = "\n".join(line for line in lines if not line.lstrip().startswith("--"))
    return _INCLUDE.sub(lambda m: f"({sql_source(m.group(1))})", source)
