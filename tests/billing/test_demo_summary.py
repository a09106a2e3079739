"""The demo's closing summary: what a newcomer reads first about the warehouse it left."""

from __future__ import annotations

from agent_billing_demo.demo import summary


def test_the_summary_tells_lines_waiting_for_a_date_from_lines_waiting_for_a_person(books, tmp_path):
    """C-AUTO's change of the 15th waits for April's invoice date; C-REVIEW's March invoice was
    never posted, so its lines wait for a person, and the summary says how to post them."""
    books.auto_and_review()
    books.bill("2024-03-01")
    books.change("S-WS", "2024-03-15", 10, 11)
    books.bill("2024-03-15")
    lines = summary(books.engine, tmp_path, tmp_path / "demo.log").splitlines()
    assert lines[lines.index("Pending lines (view billing_review): 1 waiting for their contract's next invoice "
                             "date, 1 waiting for a person to post them") + 1] == (
        "  review contracts (1, no invoice until posted): C-REVIEW; see them with `agent-billing review`, "
        "post with `agent-billing post --contract C`")
    # the invoice shown line by line, its unit price as stored (4 places) on either engine
    assert "  normal     S-WS                 2024-03-01..2024-03-31   10 x  12.0000 x 31/31 =     120.00" in lines
    assert lines[-3].endswith("invoices export --month 2024-03 --format csv")  # the month it has invoices of


def test_the_summary_names_a_contract_edit_and_the_correction_it_made(books, tmp_path):
    """The demo ends a server service back-dated after its month was invoiced: the summary
    names the edit, the adjustment lines it made, and where to read both."""
    service = books.rmm("S", "12.00", "2024-03-01")
    books.contract("C", [service], start="2024-03-01")
    books.count("S", "2024-03-01", 6)
    books.bill("2024-04-01")
    assert "Contract edits (contract_edits)" not in summary(books.engine, tmp_path, tmp_path / "demo.log")
    books.contract("C", [{**service, "end_date": "2024-04-10"}], start="2024-03-01")
    books.bill("2024-05-01")
    lines = summary(books.engine, tmp_path, tmp_path / "demo.log").splitlines()
    assert lines[lines.index("Contract edits (contract_edits)") + 2] == (
        "  S: end_date (none) -> 2024-04-10; 1 adjustment line(s) on INV-C-2024-05, -48.00 USD "
        "(`agent-billing contracts history C`, data dictionary 5.3)")
