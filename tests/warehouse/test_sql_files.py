"""The SQL files load as the code runs them: includes expanded, comments gone."""

from __future__ import annotations

import pytest

from agent_billing import sql
from agent_billing.sql import SQL_DIR, load_sql, sql_source


def test_every_sql_file_loads_with_its_includes_expanded():
    names = sorted(str(p.relative_to(SQL_DIR)) for p in SQL_DIR.rglob("*.sql"))
    assert "sync/service_agents_counted.sql" in names
    for name in names:
        source = sql_source(name)
        assert "/*include" not in source and "\n--" not in f"\n{source}", name
        load_sql(name)
    rule = sql_source("sync/agent_is_counted.sql")
    assert f"({rule})" in sql_source("sync/service_agents_counted.sql")
    assert f"({rule})" in sql_source("sync/units_now_counted.sql")


def test_an_include_of_a_missing_file_names_it(tmp_path, monkeypatch):
    (tmp_path / "a.sql").write_text("SELECT 1 WHERE /*include nowhere/b.sql*/\n")
    monkeypatch.setattr(sql, "SQL_DIR", tmp_path)
    sql_source.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="nowhere/b.sql"):
            sql_source("a.sql")
    finally:
        sql_source.cache_clear()
