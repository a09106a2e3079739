"""``agent-billing bill | review | post | invoices export`` through the real entry point."""

from __future__ import annotations

import csv
import io
import os
import stat

import pytest

from agent_billing import cli


@pytest.fixture
def run_cli(warehouse, monkeypatch, capsys):
    """Run ``agent-billing ARGS`` (billing commands only) -> (exit code, stdout, stderr)."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("agent_billing.cli.billing_cmds",))

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def contoso(books):
    books.auto_and_review()
    books.change("S-WS", "2024-03-15", 10, 11)
    books.concluded("2024-04-01")  # the nightly sync concluded up to April 1st
    return books


def test_bill_prints_what_it_posted_and_what_waits(contoso, run_cli):
    code, out, _ = run_cli("bill", "--as-of", "2024-04-01")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["contract", "posting", "currency", "invoice", "type", "lines",
                                "total", "pending", "pending", "total", "as", "of"]
    assert [x.split() for x in lines[2:4]] == [
        ["C-AUTO", "automatic", "USD", "INV-C-AUTO-2024-04", "invoice", "3", "258.58", "0",
         "2024-04-01"],
        ["C-REVIEW", "review", "USD", "-", "2", "160.00", "2024-04-01"],
    ]
    assert lines[-1] == ("billed 2 contract(s) as of 2024-04-01: 1 invoice(s) with 3 line(s) "
                         "posted, 2 line(s) pending review, 0 waiting for the next invoice date")


def test_review_then_post(contoso, run_cli):
    run_cli("bill", "--as-of", "2024-03-01")
    code, out, _ = run_cli("review", "--contract", "C-REVIEW")
    assert code == 0
    lines = out.splitlines()
    [row] = lines[2:lines.index("")]
    line_id = row.split()[2]
    assert row.split() == ["C-REVIEW", "review", line_id, "S-SRV", "normal",
                           "2024-03-01..2024-03-31", "2", "40.0000", "31/31", "80.00", "USD",
                           "2024-03-01"]
    assert line_id == contoso.pending("C-REVIEW")[0]["line_id"]
    assert lines[lines.index("") + 3].split() == ["C-REVIEW", "1", "80.00", "USD"]
    # the sync has reached April's invoice date since: posting these lines as of April's takes a run first
    assert lines[-1] == ("contract C-REVIEW: these lines are as of 2024-03-01; its invoice of 2024-04 is due: bill "
                         "as of 2024-04-01 first (`agent-billing bill --as-of 2024-04-01 --contract C-REVIEW`), "
                         "then post it")

    # A month the nightly sync has not reached is refused before anything is posted.
    code, out, err = run_cli("post", "--contract", "C-REVIEW", "--as-of", "2024-05-01")
    assert (code, out) == (2, "") and "cannot post as of 2024-05-01: the latest concluded sync date is" in err and "or post as of" in err
    assert contoso.pending("C-REVIEW") and "INV-C-REVIEW-2024-05" not in contoso.invoices()

    code, out, _ = run_cli("post", "--contract", "C-REVIEW")
    assert (code, out.strip()) == (0, "posted INV-C-REVIEW-2024-03 (invoice, invoice date "
                                      "2024-03-01, as of 2024-03-01): 1 line(s), total 80.00 USD")
    # April's invoice date has passed with no billing run since: review says which contracts it
    # gives lines to (April's invoices), though none are pending yet
    # (the automatic one's run posts it, final; the review one's waits for `post`)
    run = "a billing run as of 2024-04-01 gives it {} line(s) (a contracts change, a night or an invoice date since " \
          "its last run): `agent-billing bill --as-of 2024-04-01 --contract {}`"
    assert run_cli("review")[1].strip().split("\n\n") == [
        "no pending lines",
        "contract C-AUTO: no pending lines, but " + run.format(2, "C-AUTO") + " posts them as its invoice of "
        "2024-04, final (`agent-billing invoices preview --contract C-AUTO` shows them first)",
        "contract C-REVIEW: no pending lines, but " + run.format(1, "C-REVIEW") + " computes them for review, then "
        "post them as its invoice of 2024-04"]


def test_post_with_the_reviewed_total_refuses_lines_a_later_run_changed(contoso, run_cli):
    """Finance reviewed 160.00; the nightly run then refreshed the pending lines (a change from
    2 to 7 servers on April 2nd): post --expect-total refuses what was not reviewed."""
    run_cli("bill", "--as-of", "2024-04-01")
    assert run_cli("review", "--contract", "C-REVIEW")[1].splitlines()[-1].split() == ["C-REVIEW", "2", "160.00", "USD"]
    contoso.change("S-SRV", "2024-04-02", 2, 7)
    contoso.concluded("2024-04-02")
    run_cli("bill", "--as-of", "2024-04-02")

    code, out, err = run_cli("post", "--contract", "C-REVIEW", "--expect-total", "160.00")
    assert (code, out) == (2, "")
    assert err.strip().endswith(
        "the pending lines of contract C-REVIEW total 353.33 USD, not the 160.00 you typed: check the figure, "
        "or a billing run refreshed them since they were reviewed (`agent-billing review --contract C-REVIEW` "
        "shows them now); nothing was posted")
    assert "INV-C-REVIEW-2024-04" not in contoso.invoices()
    # As of the invoice date, before the run that refreshed them: refused with what works (a
    # run for the earlier date never moves the pending lines back: the advice was a loop).
    code, out, err = run_cli("post", "--contract", "C-REVIEW", "--as-of", "2024-04-01")
    assert (code, out) == (2, "") and err.strip().endswith(
        "the pending lines of contract C-REVIEW are as of 2024-04-02, later than 2024-04-01: post them as of "
        "2024-04-02 or later (leave out --as-of); the months not invoiced yet go on that invoice")
    assert "INV-C-REVIEW-2024-04" not in contoso.invoices()
    code, _, err = run_cli("post", "--contract", "C-REVIEW", "--expect-total", "about 350")
    assert code == 2 and "--expect-total 'about 350' is not an amount" in err
    code, out, _ = run_cli("post", "--contract", " C-REVIEW ", "--expect-total", "353.33")  # as pasted
    assert code == 0 and "total 353.33 USD" in out
    code, out, err = run_cli("post", "--contract", "C-REVIEW", "--expect-total", "353.33")  # posted twice
    assert (code, out) == (2, "") and err.strip().endswith(
        "contract C-REVIEW has no pending lines to post (its latest invoice is INV-C-REVIEW-2024-04)")


def test_a_renamed_service_does_not_hold_back_its_reviewed_lines(contoso, run_cli):
    """A name is in the lines' descriptions, not in what they bill: post them, named anew."""
    run_cli("bill", "--as-of", "2024-04-01")
    contoso.contract("C-REVIEW", [{**contoso.rmm("S-SRV", "40.00", "2024-03-01"), "name": "Servers"}],
                     start="2024-03-01", posting="review")
    code, out, err = run_cli("post", "--contract", "C-REVIEW")
    assert code == 0, err
    lines = contoso.invoice("INV-C-REVIEW-2024-04")["lines"]
    assert len(lines) == 2 and all("Servers" in x["description"] for x in lines if x["kind"] == "normal")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("bill", "--as-of", "2024-02-30"), "invalid --as-of '2024-02-30': day is out of range for month"),
        (("bill", "--as-of", "2024/03/01"), "invalid --as-of '2024/03/01': expected YYYY-MM-DD"),
        (("bill", "--as-of", "20240301"), "invalid --as-of '20240301': expected YYYY-MM-DD"),  # Python would read it
        (("invoices", "export", "--month", "2024-3"), "invalid --month '2024-3': expected YYYY-MM"),
        (("bill", "--as-of", "2024-03-01", "--contract", "NOPE"), "unknown contract(s): NOPE"),
        (("review", "--contract", "NOPE"), "unknown contract NOPE"),
        (("post", "--contract", "NOPE"), "unknown contract NOPE"),
        (("post", "--contract", "C-AUTO"), "contract C-AUTO posts automatically: the billing run posts each of its "
                                            "invoices on its invoice date"),
        (("post", "--contract", "C-AUTO", "--as-of", "soon"), "invalid --as-of 'soon'"),
        (("invoices", "export", "--month", "2024-3-1"), "invalid --month '2024-3-1': expected YYYY-MM"),
        (("invoices", "list", "--month", "2025-13"), "invalid --month '2025-13': there is no month 13 (01 to 12)"),
        (("invoices", "list", "--month", "0000-05"), "invalid --month '0000-05': there is no year 0000"),
    ],
)
def test_bad_input_is_a_clear_error(contoso, run_cli, args, message):
    code, out, err = run_cli(*args)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err


def test_export_an_invoice_month_as_csv(contoso, run_cli, tmp_path):
    run_cli("bill", "--as-of", "2024-03-01")
    run_cli("bill", "--as-of", "2024-04-01")
    code, out, _ = run_cli("invoices", "export", "--month", "2024-04", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["kind"], r["period_start"], r["units"], r["days"], r["days_in_period"], r["amount"])
            for r in rows] == [
        ("prorated", "2024-03-15", "1", "17", "31", "6.58"),
        ("normal", "2024-04-01", "11", "30", "30", "132.00"),
    ]
    prorated = rows[0]
    assert {k: prorated[k] for k in ("invoice_id", "invoice_date", "document_type", "currency",
                                     "contract_id", "account_id", "account_name", "service_id",
                                     "service_name", "unit_price", "change_id", "adjusts_line_id")} == {
        "invoice_id": "INV-C-AUTO-2024-04", "invoice_date": "2024-04-01", "document_type": "invoice",
        "currency": "USD", "contract_id": "C-AUTO", "account_id": "A-C-AUTO",
        "account_name": "Account C-AUTO", "service_id": "S-WS", "service_name": "Agents S-WS",
        "unit_price": "12.0000", "change_id": "S-WS:2024-03-15:nightly_sync", "adjusts_line_id": "",
    }

    assert run_cli("invoices", "export", "--month", "2024-04", "--format", "csv", "--output", "-")[1] == out

    target = tmp_path / "exports" / "april.csv"
    target.parent.mkdir()
    code, _, err = run_cli("invoices", "export", "--month", "2024-04", "--output", str(target))
    assert code == 0 and "wrote 2 line(s) of 2024-04" in err
    assert target.read_text() == out
    assert [p.name for p in target.parent.iterdir()] == ["april.csv"]  # no temporary file left
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask  # as a plain open leaves it
    target.chmod(0o664)  # a shared finance folder's file, written again: it keeps its mode
    assert run_cli("invoices", "export", "--month", "2024-04", "--output", str(target))[0] == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o664
