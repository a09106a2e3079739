"""SQL kept as files under ``include/sql``: loaded once, always executed with bound parameters."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from sqlalchemy import TextClause, text


def _sql_dir() -> Path:
    """``include/sql`` of a source checkout, or its copy inside a built wheel (``sql_files``)."""
    package = Path(__file__).resolve().parent
    shipped = package / "sql_files"
    return shipped if shipped.is_dir() else package.parent / "sql"


SQL_DIR = _sql_dir()


@cache
def load_sql(name: str) -> TextClause:
    """Return ``include/sql/<name>`` as a SQLAlchemy text clause (``:name`` parameters)."""
    path = SQL_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"SQL file not found: {path}")
    # Whole-line comments are dropped: text() would read a ":name" in them as a parameter.
    lines = path.read_text(encoding="utf-8").splitlines()
    return text("\n".join(line for line in lines if not line.lstrip().startswith("--")))
