"""Export of the posted lines of one invoice month for finance, as CSV or JSON."""

from __future__ import annotations

import csv
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TextIO

from sqlalchemy import Engine

from agent_billing.billing import store
from agent_billing.billing.money import quantize
from agent_billing.errors import UserError, cannot_write
from agent_billing.warehouse.values import as_utc

COLUMNS = (
    "invoice_id", "invoice_date", "document_type", "currency", "invoice_total", "contract_id",
    "account_id", "account_name", "line_id", "service_id", "service_name", "kind",
    "period_start", "period_end", "units", "unit_price", "days", "days_in_period", "amount",
    "change_id", "adjusts_line_id", "description",
    # added later, at the end, so that an import reading columns by position keeps working
    "invoice_month", "adjusts_invoice_id", "posted_at",
)
FORMATS = ("csv", "json")
#: What Excel needs to read a UTF-8 CSV's accented names right (``--for-excel``); other readers
#: (Python's csv, PostgreSQL's COPY) would take it for part of the first column's name.
BYTE_ORDER_MARK = "\ufeff"
#: Columns of free text from the contracts file: its ids and names, and what starts with them (a
#: change id with its service id, a description with its service name). In CSV a cell of them
#: that a spreadsheet would read as a formula (=, +, -, @, tab, CR first) is written with a
#: leading apostrophe; the generated ids (INV-…, L…), dates and amounts are written as they are.
TEXT_COLUMNS = ("contract_id", "account_id", "account_name", "service_id", "service_name", "change_id",
                "description")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def export_rows(engine: Engine, month: date) -> list[dict]:
    """One record per posted line of the invoices of ``month`` (amounts to the currency's unit)."""
    with engine.connect() as conn:
        rows = conn.execute(store.query("export_lines"), {"invoice_month": month}).mappings()
        return [
            {
                **{name: row[name] for name in COLUMNS},
                "amount": quantize(row["amount"], row["currency"]),
                "invoice_total": quantize(row["invoice_total"], row["currency"]),
                # an instant in UTC, one form on both engines (SQLite hands back naive text)
                "posted_at": as_utc(row["posted_at"]).isoformat(timespec="seconds"),
            }
            for row in rows
        ]


def _inert(value):
    """A text cell no spreadsheet runs as a formula (OWASP's CSV injection advice)."""
    return f"'{value}" if isinstance(value, str) and value.startswith(_FORMULA_START) else value


def export_invoice_lines(engine: Engine, month: date, out: TextIO, fmt: str = "csv",
                         for_excel: bool = False) -> int:
    """Write the lines of ``month`` to ``out`` as CSV (a header, one row per line; ``for_excel``:
    after a byte-order mark) or JSON (a list of the same rows; decimals and dates as strings);
    return the row count."""
    rows = export_rows(engine, month)
    if fmt == "json":
        json.dump(rows, out, default=str, indent=2)
        out.write("\n")
    else:
        if for_excel:
            out.write(BYTE_ORDER_MARK)
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({**row, **{c: _inert(row[c]) for c in TEXT_COLUMNS}} for row in rows)
    return len(rows)


#: The start of an export in either format (an export of no line: ``[]``).
_EXPORT_START = re.compile(rb'(\xef\xbb\xbf)?invoice_id,|\[\s*(\]|\{\s*"invoice_id")')


def refuse_to_replace_other_files(path: Path) -> None:
    """``--output`` replaces an earlier export (the month exported again), never another file:
    a slip naming the warehouse, the contracts file or a landing's manifest lost it."""
    target = Path(os.path.realpath(path))
    try:
        if not target.is_file() or target.stat().st_size == 0:
            return
        with open(target, "rb") as handle:
            start = handle.read(64)
    except OSError:
        return  # unreadable: the write names why
    if not _EXPORT_START.match(start):
        raise UserError(
            f"{path} exists and is not an invoice export: give another file name (--output "
            "replaces only an earlier export), or remove the file first"
        )


def write_atomically(path: Path, write: Callable[[TextIO], int]) -> int:
    """Run ``write`` on a temporary file next to ``path``, then rename it over ``path``.

    A path that cannot be written (missing directory, no permission, a directory) is a
    ``UserError`` naming it; nothing is left behind. As ``open(path, "w")`` would: a symlink is
    written through (its target replaced, the link kept), a file the user may not write
    (read-only: a signed-off export) is refused, not replaced by the rename, and what is no
    regular file (``/dev/stdout``, a pipe, a device) is written to, never replaced.
    """
    if path.exists() and not path.is_file() and not path.is_dir():
        try:
            with open(path, "w", newline="", encoding="utf-8") as handle:
                return write(handle)
        except OSError as exc:
            raise cannot_write(path, exc) from None
    path = Path(os.path.realpath(path)) if os.path.islink(path) else path
    if path.exists() and not path.is_dir() and not os.access(path, os.W_OK):
        raise UserError(f"cannot write {path}: Permission denied")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise cannot_write(path, exc) from None
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            result = write(handle)
        os.chmod(tmp, _mode_for(path))  # mkstemp's 0600 would hide the file from a shared folder
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise cannot_write(path, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return result


def _mode_for(path: Path) -> int:
    """The permissions of the file being replaced, or those a new file gets (0666 less the
    umask), as a plain ``open`` would leave them."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask
