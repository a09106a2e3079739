"""Every query of the data dictionary's "Queries finance runs" runs unchanged on both engines
(the dictionary says so; a `DATE '…'` literal, for one, is a syntax error on SQLite)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import text

DICTIONARY = Path(__file__).resolve().parents[2] / "docs" / "data-dictionary.md"


def finance_queries() -> list[str]:
    document = DICTIONARY.read_text(encoding="utf-8")
    section = document[document.index("## 5. Queries finance runs"):]
    return re.findall(r"```sql\n(.*?)```", section, re.S)


def test_the_section_has_its_queries():
    assert len(finance_queries()) >= 15


@pytest.mark.parametrize("number", range(len(finance_queries())))
def test_a_documented_query_runs_on_a_billed_warehouse(corrected, number):
    """On a warehouse with invoices, a correction (adjustments) and pending lines."""
    corrected.change("S", "2024-05-10", 12, 13)
    corrected.bill("2024-05-12")
    query = finance_queries()[number]
    with corrected.engine.connect() as conn:
        for statement in query.split(";"):
            code = [line for line in statement.splitlines() if line.strip() and not line.strip().startswith("--")]
            if code:
                conn.execute(text(statement)).fetchall()
