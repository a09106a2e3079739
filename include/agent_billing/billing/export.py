"""CSV export of the posted lines of one invoice month, for finance."""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TextIO

from sqlalchemy import Engine

from agent_billing.billing import store
from agent_billing.billing.money import quantize

COLUMNS = (
    "invoice_id", "invoice_date", "document_type", "currency", "contract_id", "account_id",
    "account_name", "service_id", "service_name", "kind", "period_start", "period_end", "units",
    "unit_price", "days", "days_in_period", "amount", "change_id", "adjusts_line_id",
    "description",
)


def export_invoice_lines(engine: Engine, month: date, out: TextIO) -> int:
    """Write one CSV row per posted line of the invoices of ``month``; return the row count."""
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    count = 0
    with engine.connect() as conn:
        for row in conn.execute(store.query("export_lines"), {"invoice_month": month}).mappings():
            record = dict(row)
            record["amount"] = quantize(row["amount"], row["currency"])
            writer.writerow(record)
            count += 1
    return count


def write_atomically(path: Path, write: Callable[[TextIO], int]) -> int:
    """Run ``write`` on a temporary file next to ``path``, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            result = write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return result
