"""``bill --dry-run``, ``invoices preview|list|show`` and ``review`` through the real CLI."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from sqlalchemy import text
from tests.billing.conftest import one_line_error, warehouse_contents


@pytest.fixture
def contoso(books):
    """C-AUTO invoiced for March with a change on the 15th waiting; C-REVIEW reviewed monthly."""
    books.auto_and_review()
    books.bill("2024-03-01")
    change_id = books.change("S-WS", "2024-03-15", 10, 11)
    books._exec(
        "INSERT INTO unit_change_agents (change_id, agent_id, agent_name, event) "
        "VALUES (:c, '91000000000000000000000001', 'ws-new-01', 'added')", c=change_id)
    books.bill("2024-03-15")
    books.concluded("2024-04-01")
    return books


def rows_of(output: str) -> list[list[str]]:
    """The data rows of the first table printed (after its header and dashes)."""
    lines = [*output.splitlines(), ""]
    return [x.split() for x in lines[2:lines.index("")]]


def test_dry_run_prints_what_it_would_post_and_writes_nothing(contoso, agent_billing_cli):
    before = warehouse_contents(contoso.engine)
    dry = agent_billing_cli("bill", "--as-of", "2024-04-01", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert warehouse_contents(contoso.engine) == before  # not even billing_pending
    assert rows_of(dry.stdout) == [
        ["C-AUTO", "automatic", "USD", "INV-C-AUTO-2024-04", "invoice", "2", "138.58", "0",
         "2024-04-01"],
        ["C-REVIEW", "review", "USD", "-", "2", "160.00", "2024-04-01"],
    ]
    assert dry.stdout.splitlines()[-1] == (
        "dry run as of 2024-04-01, nothing written: 2 contract(s) would post 1 invoice(s) with "
        "2 line(s), 2 line(s) pending review, 0 waiting for the next invoice date (would wait)")

    real = agent_billing_cli("bill", "--as-of", "2024-04-01")
    assert real.returncode == 0 and rows_of(real.stdout) == rows_of(dry.stdout)
    assert contoso.invoice("INV-C-AUTO-2024-04")["total"] == Decimal("138.58")

    # once posted, the invoice still shows the machines behind its prorated line (a dispute)
    shown = json.loads(agent_billing_cli("invoices", "show", "INV-C-AUTO-2024-04", "--format", "json").stdout)
    assert [(x["kind"], x["agents"]) for x in shown["lines"]] == [
        ("prorated", [{"agent_id": "91000000000000000000000001", "agent_name": "ws-new-01", "event": "added"}]),
        ("normal", [])]
    text_show = agent_billing_cli("invoices", "show", "INV-C-AUTO-2024-04").stdout
    assert f"{shown['lines'][0]['line_id']}  91000000000000000000000001  ws-new-01   added" in text_show, text_show


def test_preview_shows_the_next_invoice_with_the_agents_behind_each_change(contoso, agent_billing_cli):
    before = warehouse_contents(contoso.engine)
    process = agent_billing_cli("invoices", "preview", "--contract", "C-AUTO", "--format", "json")
    assert process.returncode == 0, process.stderr
    preview = json.loads(process.stdout)
    assert {k: preview[k] for k in ("invoice_id", "invoice_date", "as_of", "complete", "total",
                                    "document_type")} == {
        "invoice_id": "INV-C-AUTO-2024-04", "invoice_date": "2024-04-01", "as_of": "2024-04-01",
        "complete": True, "total": "138.58", "document_type": "invoice",
    }
    assert [(x["kind"], x["period_start"], x["period_end"], x["units"], x["days"], x["amount"])
            for x in preview["lines"]] == [
        ("prorated", "2024-03-15", "2024-03-31", 1, 17, "6.58"),
        ("normal", "2024-04-01", "2024-04-30", 11, 30, "132.00"),
    ]
    assert preview["lines"][0]["agents"] == [
        {"agent_id": "91000000000000000000000001", "agent_name": "ws-new-01", "event": "added"}]
    assert preview["lines"][1]["agents"] == []

    table = agent_billing_cli("invoices", "preview", "--contract", "C-AUTO", "--as-of", "2024-03-20")
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith(
        "next invoice INV-C-AUTO-2024-04 of contract C-AUTO (automatic), invoice date 2024-04-01, "
        "as of 2024-03-20 (so far; the month's normal lines are added on its invoice date): "
        "1 line(s), total 6.58 USD")
    assert "91000000000000000000000001  ws-new-01   added" in table.stdout
    so_far = json.loads(agent_billing_cli("invoices", "preview", "--contract", "C-AUTO", "--as-of", "2024-03-20",
                                          "--format", "json").stdout)
    assert (so_far["complete"], so_far["document_type"]) == (False, None)  # not yet an invoice or a credit note
    # the forecast is the invoice of 2024-04-01 with the units as counted until the 20th: 11 units for April
    assert so_far["forecast"]["total"] == "138.58" == preview["total"]
    assert [(x["kind"], x["period_start"], x["units"], x["amount"]) for x in so_far["forecast"]["added_lines"]] == [
        ("normal", "2024-04-01", 11, "132.00")]
    assert preview["forecast"] is None  # complete: the invoice itself
    assert table.stdout.splitlines()[1] == (  # the nights synced after the preview's date count too
        "forecast for 2024-04-01, with the nights counted until 2024-04-01: total 138.58 USD, "
        "adding 1 line(s) (below the lines so far)")
    assert so_far["forecast"]["counted_until"] == "2024-04-01"
    assert rows_of(table.stdout.split("the forecast adds:\n")[1])[0][:8] == [
        so_far["forecast"]["added_lines"][0]["line_id"], "S-WS", "normal", "2024-04-01..2024-04-30", "11",
        "12.0000", "30/30", "132.00"]
    assert warehouse_contents(contoso.engine) == before

    review = json.loads(agent_billing_cli(
        "invoices", "preview", "--contract", "C-REVIEW", "--format", "json").stdout)
    assert (review["invoice_id"], review["total"], len(review["lines"])) == (
        "INV-C-REVIEW-2024-04", "160.00", 2)  # March's line is still not posted: it comes too
    assert (review["post_before"], preview["post_before"]) == ("2024-05-01", None)  # automatic: posts itself
    # its pending lines are those of the run as of 03-15, March's: `post` alone would post March's
    assert (review["bill_first"], preview["bill_first"]) == ("2024-04-01", None)
    assert agent_billing_cli("invoices", "preview", "--contract", "C-REVIEW").stdout.splitlines()[1] == (
        "a review contract: `post` would post the pending lines of its last billing run, not these: bill as of "
        "2024-04-01 first (agent-billing bill --as-of 2024-04-01 --contract C-REVIEW), then post it before "
        "2024-05-01 (agent-billing post --contract C-REVIEW)")
    assert agent_billing_cli("bill", "--as-of", "2024-04-01", "--contract", "C-REVIEW").returncode == 0
    assert agent_billing_cli("invoices", "preview", "--contract", "C-REVIEW").stdout.splitlines()[1] == (
        "a review contract: post it before 2024-05-01 (agent-billing post --contract C-REVIEW), or its lines go "
        "on the next month's invoice")
    posted = agent_billing_cli("post", "--contract", "C-REVIEW")  # what the preview showed is what is posted
    assert posted.returncode == 0, posted.stderr
    assert contoso.invoice("INV-C-REVIEW-2024-04")["total"] == Decimal(review["total"])


def test_a_review_invoice_a_later_night_changed_says_to_bill_before_posting(books, agent_billing_cli):
    """Billing stalled within the month: the pending lines are April's but miss the change of the
    10th, so `post` alone would post 80.00 where the preview shows 108.00."""
    books.contract("C-R", [books.rmm("S", "40.00", "2024-03-01")], start="2024-03-01", posting="review")
    books.count("S", "2024-03-01", 2)
    books.bill("2024-03-01")
    assert agent_billing_cli("post", "--contract", "C-R").returncode == 0
    books.bill("2024-04-01")
    books.change("S", "2024-04-10", 2, 3)
    books.concluded("2024-04-20")
    preview = json.loads(agent_billing_cli("invoices", "preview", "--contract", "C-R", "--format", "json").stdout)
    assert (preview["invoice_id"], preview["total"], preview["bill_first"]) == ("INV-C-R-2024-04", "108.00", "2024-04-20")
    # review shows the 80.00 that `post` would post, and says what the preview says
    review = agent_billing_cli("review").stdout
    assert review.splitlines()[-1] == (
        "contract C-R: these lines are as of 2024-04-01, and the nights up to 2024-04-20 have synced since without a "
        "billing run: `agent-billing bill --as-of 2024-04-20 --contract C-R` brings them in (`invoices preview` "
        "shows them), or post these as they are: what those nights change then goes on the next invoice"), review
    assert agent_billing_cli("bill", "--as-of", "2024-04-20", "--contract", "C-R").returncode == 0
    assert "synced since" not in agent_billing_cli("review").stdout
    again = json.loads(agent_billing_cli("invoices", "preview", "--contract", "C-R", "--format", "json").stdout)
    assert (again["total"], again["bill_first"], again["post_before"]) == ("108.00", None, "2024-05-01")
    posted = agent_billing_cli("post", "--contract", "C-R")
    assert posted.stdout == ("posted INV-C-R-2024-04 (invoice, invoice date 2024-04-01, as of 2024-04-20): 2 line(s), "
                             "total 108.00 USD\n"), posted.stdout
    assert books.invoice("INV-C-R-2024-04")["total"] == Decimal("108.00")
    # dated 04-01, it bills the change of the 10th: the listing and the invoice say why
    assert rows_of(agent_billing_cli("invoices", "list", "--month", "2024-04").stdout)[0][4:6] == [
        "2024-04-01", "2024-04-20"]
    assert agent_billing_cli("invoices", "show", "INV-C-R-2024-04").stdout.splitlines()[1] == (
        "posted as of 2024-04-20: its lines bill the unit changes up to that date")


def test_post_and_review_say_to_bill_first_when_the_next_invoice_is_due(books, agent_billing_cli):
    """March is posted; a change of the 20th waits in March's pending lines; April's invoice date
    has passed without a billing run: `post` cannot post those lines as March's, and both it and
    `review` say what to run, rather than "wait"."""
    books.contract("C-R", [books.rmm("S", "40.00", "2024-03-01")], start="2024-03-01", posting="review")
    books.count("S", "2024-03-01", 2)
    books.bill("2024-03-01")
    assert agent_billing_cli("post", "--contract", "C-R").returncode == 0
    books.change("S", "2024-03-20", 2, 3)
    books.bill("2024-03-20")
    books.concluded("2024-04-01")
    way = ("its invoice of 2024-04 is due: bill as of 2024-04-01 first (`agent-billing bill --as-of 2024-04-01 "
           "--contract C-R`), then post it")
    post = agent_billing_cli("post", "--contract", "C-R")
    assert post.returncode == 2 and post.stderr.strip() == (
        "agent-billing post: error: contract C-R already has an invoice for 2024-03; its pending lines wait for "
        f"the next invoice month; {way}"), post.stderr
    review = agent_billing_cli("review")
    assert review.stdout.splitlines()[-1] == f"contract C-R: these lines are as of 2024-03-20; {way}", review.stdout
    assert agent_billing_cli("bill", "--as-of", "2024-04-01", "--contract", "C-R").returncode == 0
    assert "is due" not in agent_billing_cli("review").stdout
    assert agent_billing_cli("post", "--contract", "C-R").returncode == 0
    assert books.invoice("INV-C-R-2024-04")["total"] == Decimal("135.48")  # 3 × 40 + 1 × 40 × 12/31


def test_a_review_invoice_without_lines_asks_for_no_post(books, agent_billing_cli):
    """Its only service ended in March: April's invoice has nothing to post, so the preview sends
    nobody to `bill` or `post` (which would say there is nothing)."""
    books.contract("C-R", [books.rmm("S", "40.00", "2024-03-01", end_date="2024-03-31")], start="2024-03-01",
                   posting="review")
    books.count("S", "2024-03-01", 2)
    books.bill("2024-03-01")
    assert agent_billing_cli("post", "--contract", "C-R").returncode == 0
    books.bill("2024-04-01")
    books.concluded("2024-04-02")
    table = agent_billing_cli("invoices", "preview", "--contract", "C-R")
    assert table.returncode == 0 and "0 line(s), total 0.00 USD" in table.stdout, table.stdout
    assert agent_billing_cli("review", "--contract", "C-R").stdout == (
        "no pending lines for contract C-R as of its last billing run (its next invoice now, with any change since: "
        "agent-billing invoices preview --contract C-R)\n")
    assert "post" not in table.stdout.split("USD", 1)[1], table.stdout
    preview = json.loads(agent_billing_cli("invoices", "preview", "--contract", "C-R", "--format", "json").stdout)
    assert (preview["bill_first"], preview["post_before"]) == (None, None)


@pytest.mark.parametrize("posting", ["review", "automatic"])
def test_review_says_when_its_pending_lines_are_out_of_date(books, agent_billing_cli, posting):
    """A price typed wrong on a new service is corrected in the contracts file before an invoice
    bills it: the pending lines of the last run still carry it until a run computes them again,
    and `review` says so rather than show a total no invoice will carry (a review contract's to
    post, an automatic one's waiting for its invoice date)."""
    base = books.rmm("S", "10.00", "2024-03-01")
    books.contract("C-R", [base], start="2024-03-01", posting=posting)
    books.count("S", "2024-03-01", 1)
    books.bill("2024-03-01")
    if posting == "review":
        assert agent_billing_cli("post", "--contract", "C-R").returncode == 0
    books.contract("C-R", [base, books.rmm("T", "4500", "2024-03-17")], start="2024-03-01", posting=posting)
    books.count("T", "2024-03-17", 2)
    books.bill("2024-03-17")
    books.contract("C-R", [base, books.rmm("T", "45.00", "2024-03-17")], start="2024-03-01", posting=posting)
    stale = agent_billing_cli("review")
    assert stale.returncode == 0 and "4354.84" in stale.stdout, stale.stdout  # 2 × 4500 × 15/31
    assert stale.stdout.splitlines()[-1] == (
        "contract C-R: these pending lines are out of date (something they bill changed since the billing run "
        "as of 2024-03-17: a contracts change, a night re-run): `agent-billing bill --as-of 2024-03-17 "
        "--contract C-R` computes them again")
    assert agent_billing_cli("bill", "--as-of", "2024-03-17", "--contract", "C-R").returncode == 0
    fresh = agent_billing_cli("review")
    assert "43.55" in fresh.stdout and "out of date" not in fresh.stdout, fresh.stdout  # 2 × 45 × 15/31


def test_review_names_a_contract_a_billing_run_would_give_lines_it_has_none_of(books, agent_billing_cli):
    """March is posted and nothing is pending; a service is then added from the 17th, after that
    night's billing run. `review` showed "no pending lines" as if nothing waited: it now names the
    contract and the run that gives it the lines; once run, the lines are pending and the note goes."""
    base = books.rmm("S", "10.00", "2024-03-01")
    books.contract("C-R", [base], start="2024-03-01", posting="review")
    books.contract("C-Q", [books.rmm("Q", "10.00", "2024-03-01")], start="2024-03-01")  # nothing changes
    books.count("S", "2024-03-01", 1)
    books.count("Q", "2024-03-01", 1)
    books.bill("2024-03-01")
    assert agent_billing_cli("post", "--contract", "C-R").returncode == 0
    books.count("S", "2024-03-17", 1)
    books.bill("2024-03-17")
    assert agent_billing_cli("review").stdout == "no pending lines\n"
    books.contract("C-R", [base, {"service_id": "T", "name": "Support", "unit_price": "45.00",
                                   "units_source": "manual", "units": 2, "start_date": "2024-03-17"}],
                   start="2024-03-01", posting="review")
    run = ("a billing run as of 2024-03-17 gives it 1 line(s) (a contracts change, a night or an invoice date "
           "since its last run): `agent-billing bill --as-of 2024-03-17 --contract C-R` computes them; they wait for "
           "its next invoice date (`agent-billing invoices preview --contract C-R` shows them)")
    note = f"contract C-R: no pending lines, but {run}"
    assert agent_billing_cli("review").stdout == f"no pending lines\n\n{note}\n"
    assert agent_billing_cli("review", "--contract", "C-R").stdout.endswith(f"\n\n{note}\n")
    refused = agent_billing_cli("post", "--contract", "C-R")
    assert refused.returncode == 2 and refused.stderr.strip() == (
        "agent-billing post: error: contract C-R has no pending lines to post (its latest invoice is "
        "INV-C-R-2024-03); " + run.replace(" (a contracts change, a night or an invoice date since its last run)",
                                           "")), refused.stderr
    assert agent_billing_cli("bill", "--as-of", "2024-03-17", "--contract", "C-R").returncode == 0
    after = agent_billing_cli("review").stdout
    assert "43.55" in after and "no pending lines" not in after, after  # 2 × 45 × 15/31
    # as the note said, they wait for April's invoice: post refuses them until then, and posts them after
    assert "its pending lines wait for the next invoice month" in agent_billing_cli("post", "--contract", "C-R").stderr
    books.count("S", "2024-04-01", 1)
    assert agent_billing_cli("bill", "--as-of", "2024-04-01", "--contract", "C-R").returncode == 0
    posted = agent_billing_cli("post", "--contract", "C-R")
    assert posted.returncode == 0 and posted.stdout.startswith("posted INV-C-R-2024-04"), posted.stderr


def test_review_does_not_promise_an_invoice_that_nights_to_recount_hold(books, agent_billing_cli):
    """April's invoice is due and no run made it; a contracts change left the night of 20 March
    uncounted for the service. `review` said the run "posts them as its invoice of 2024-04,
    final", and the run then refused the contract. It now names the nights to re-run first."""
    from agent_billing.billing import run_billing

    books.contract("C", [books.rmm("S", "12.00", "2024-03-01")], start="2024-03-01")
    books.count("S", "2024-03-01", 10)
    books.bill("2024-03-01")
    books.concluded("2024-03-20")
    books.concluded("2024-04-01")
    books._exec("INSERT INTO nights_to_recount (service_id, snapshot_date) VALUES ('S', :d)", d=books.d("2024-03-20"))
    note = agent_billing_cli("review").stdout
    assert "posts them as its invoice of 2024-04" not in note, note
    assert note.endswith(
        "since its last run): its invoice of 2024-04 cannot be posted until these nights are re-run, or accepted "
        "where no re-run can count them: service S on "
        "2024-03-20 (docs/runbook.md, 'Fix a wrong contract'); then `agent-billing bill --as-of 2024-04-01 "
        "--contract C` posts them, final (`agent-billing invoices preview --contract C` shows them first)\n"), note
    [failed] = run_billing(books.engine, books.d("2024-04-01")).failed  # as the note says: refused
    assert failed.contract_id == "C" and "2024-03-20" in failed.error
    assert sorted(books.invoices()) == ["INV-C-2024-03"]


def test_review_names_the_nights_that_hold_a_contract_without_pending_lines(books, agent_billing_cli):
    """A service added with a back-dated start left a synced night uncounted; no run gives the
    contract a line yet (the service has no count), so `review --contract` said only "no pending
    lines" while its next invoice is held until the night is re-run (an operator's review)."""
    books.contract("C", [books.rmm("S", "12.00", "2024-03-01"), books.rmm("T", "5.00", "2024-03-01")],
                   start="2024-03-01")
    books.count("S", "2024-03-01", 10)
    books.bill("2024-03-01")
    books.concluded("2024-03-05")
    books.concluded("2024-03-10")
    books._exec("INSERT INTO nights_to_recount (service_id, snapshot_date) VALUES ('T', :d)", d=books.d("2024-03-05"))
    for review in (("review",), ("review", "--contract", "C")):
        note = agent_billing_cli(*review).stdout
        assert note.splitlines()[-1] == (
            "contract C cannot be posted until these nights are re-run, or accepted where no re-run can count "
            "them: service T on 2024-03-05 (docs/runbook.md, 'Fix a wrong contract')"), note
    books.count("S", "2024-03-07", 12)  # now a run gives it a line, which waits for April's invoice: held too
    books.change("S", "2024-03-07", 10, 12)
    note = agent_billing_cli("review", "--contract", "C").stdout.splitlines()[-1]
    assert note.startswith("contract C: no pending lines, but a billing run as of 2024-03-10 gives it 1 line(s)"), note
    assert note.endswith(
        "they wait for its next invoice date (`agent-billing invoices preview --contract C` shows them); that invoice "
        "cannot be posted until these nights are re-run, or accepted where no re-run can count them: service T on "
        "2024-03-05 (docs/runbook.md, 'Fix a wrong contract')"), note


def test_review_preview_and_post_name_the_nights_an_invoice_leaves_out(books, agent_billing_cli):
    """The night of 4 April failed (VSA down) and that of the 6th is quarantined; the nights after
    them ran. April's review invoice is due: what those nights change is not in its lines, and
    posting it then carries that change on a later invoice, a day late. `review`, the due
    invoice's preview and `post` say so (only the forecast did)."""
    books.contract("C-R", [books.rmm("S", "40.00", "2024-03-01")], start="2024-03-01", posting="review")
    books.count("S", "2024-03-01", 2)
    books.bill("2024-03-01")
    assert agent_billing_cli("post", "--contract", "C-R").returncode == 0
    books.concluded("2024-04-04", "failed")
    books.concluded("2024-04-06", "quarantined")
    books.bill("2024-04-07")
    words = ("the nights quarantined 2024-04-06 (release or discard: agent-billing snapshots release|discard "
             "2024-04-06); failed 2024-04-04 (re-run: agent-billing sync --date 2024-04-04); decided before the "
             "invoice is posted, what they change is on it; after, on a later one")
    assert agent_billing_cli("review").stdout.splitlines()[-1] == f"contract C-R: not in these lines, {words}"
    for bill in (("bill", "--as-of", "2024-04-07"), ("bill", "--as-of", "2024-04-07", "--dry-run")):
        billed = agent_billing_cli(*bill)  # a run past the held nights (the horizon) says what it leaves out
        assert billed.returncode == 0 and billed.stdout.splitlines()[-1] == (
            "not counted in this run, the nights quarantined 2024-04-06 (release or discard: agent-billing snapshots "
            "release|discard 2024-04-06); failed 2024-04-04 (re-run: agent-billing sync --date 2024-04-04); once "
            "decided, what they change goes on the next invoice of each contract they count for"), billed.stdout
    preview = agent_billing_cli("invoices", "preview", "--contract", "C-R")
    assert f"not in these lines, {words}" in preview.stdout.splitlines(), preview.stdout
    as_json = json.loads(agent_billing_cli("invoices", "preview", "--contract", "C-R", "--format", "json").stdout)
    assert as_json["nights_not_counted"] == ["2024-04-04", "2024-04-06"]
    posted = agent_billing_cli("post", "--contract", "C-R")
    assert posted.returncode == 0 and posted.stdout.splitlines()[-1] == (
        "not in it, the nights quarantined 2024-04-06 (release or discard: agent-billing snapshots release|discard "
        "2024-04-06); failed 2024-04-04 (re-run: agent-billing sync --date 2024-04-04); once decided, what they "
        "change goes on a later invoice"), posted.stdout
    # named on the next invoice too, until a person decides them
    forecast = json.loads(agent_billing_cli("invoices", "preview", "--contract", "C-R", "--format", "json").stdout)
    assert forecast["forecast"]["nights_not_counted"] == ["2024-04-04", "2024-04-06"]
    with books.engine.begin() as conn:
        conn.execute(text("UPDATE sync_runs SET status = 'discarded' WHERE snapshot_date = '2024-04-06'"))
    forecast = json.loads(agent_billing_cli("invoices", "preview", "--contract", "C-R", "--format", "json").stdout)
    assert forecast["forecast"]["nights_not_counted"] == ["2024-04-04"]


def test_the_forecast_names_the_nights_it_cannot_count(contoso, agent_billing_cli):
    """A quarantined night before the forecast's last night counts for nothing until a person
    decides it: the forecast says so rather than pass for the invoice to come."""
    with contoso.engine.begin() as conn:
        conn.execute(text("INSERT INTO sync_runs (snapshot_date, status) VALUES ('2024-03-25', 'quarantined')"))
    process = agent_billing_cli("invoices", "preview", "--contract", "C-AUTO", "--as-of", "2024-03-20",
                                "--format", "json")
    assert process.returncode == 0, process.stderr
    assert json.loads(process.stdout)["forecast"]["nights_not_counted"] == ["2024-03-25"]
    table = agent_billing_cli("invoices", "preview", "--contract", "C-AUTO", "--as-of", "2024-03-20").stdout
    assert table.splitlines()[2] == (
        "not in the forecast, the nights quarantined 2024-03-25 (release or discard: agent-billing snapshots "
        "release|discard 2024-03-25); decided before the invoice is posted, what they change is on it; after, on a "
        "later one")


def test_list_and_show_posted_invoices(contoso, agent_billing_cli):
    listing = agent_billing_cli("invoices", "list", "--month", "2024-03", "--format", "json")
    assert listing.returncode == 0, listing.stderr
    assert [(r["invoice_id"], r["lines"], r["total"], r["document_type"])
            for r in json.loads(listing.stdout)] == [("INV-C-AUTO-2024-03", 1, "120.00", "invoice")]
    assert rows_of(agent_billing_cli("invoices", "list", "--month", " 2024-03").stdout) == [
        ["INV-C-AUTO-2024-03", "C-AUTO", "Account", "C-AUTO", "2024-03-01", "2024-03-01", "invoice", "1",
         "120.00", "USD"]]
    assert agent_billing_cli("invoices", "list", "--month", "2024-02").stdout == "no invoices for 2024-02\n"

    show = json.loads(agent_billing_cli("invoices", "show", "INV-C-AUTO-2024-03", "--format", "json").stdout)
    [line] = show["lines"]
    assert (show["total"], line["kind"], line["units"], line["amount"]) == ("120.00", "normal", 10, "120.00")
    assert line["line_id"] == contoso.lines()[0]["line_id"]
    text_show = agent_billing_cli("invoices", "show", "INV-C-AUTO-2024-03 ")  # as pasted from a spreadsheet
    assert text_show.stdout.startswith("INV-C-AUTO-2024-03 (invoice) for contract C-AUTO")
    assert line["line_id"] in text_show.stdout
    assert line["description"] and line["description"] in text_show.stdout  # what the line is, in words

    # the horizon moves back before March (its nights reopened): March's invoices still list and export
    with contoso.engine.begin() as conn:
        conn.execute(text("UPDATE sync_runs SET status = 'failed' WHERE snapshot_date >= '2024-03-01'"))
    assert rows_of(agent_billing_cli("invoices", "list", "--month", "2024-03").stdout)[0][0] == "INV-C-AUTO-2024-03"
    export = agent_billing_cli("invoices", "export", "--month", "2024-03", "--format", "csv")
    assert export.returncode == 0 and "INV-C-AUTO-2024-03" in export.stdout, export.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("invoices", "show", "INV-NOPE"), "agent-billing invoices show: error: unknown invoice INV-NOPE"),
        (("invoices", "preview", "--contract", "NOPE"), "unknown contract NOPE"),
        (("invoices", "preview", "--contract", "C-AUTO", "--as-of", "2024-04-31"),
         "invalid --as-of '2024-04-31'"),
        (("invoices", "list", "--month", "April"), "invalid --month 'April': expected YYYY-MM"),
        # a month billing has not reached is no month without invoices (a typo for 2024-03, say)
        (("invoices", "list", "--month", "2024-05"), "no invoice of 2024-05 can exist yet: billing reaches "
         "2024-04-01 (the billing horizon: the latest concluded sync date, or today); check --month"),
        (("invoices", "export", "--month", "2034-03", "--format", "csv"), "no invoice of 2034-03 can exist yet"),
        # C-AUTO was billed as of 2024-03-15: a preview as of the 10th would silently be the 15th's
        (("invoices", "preview", "--contract", "C-AUTO", "--as-of", "2024-03-10"),
         "contract C-AUTO was billed as of 2024-03-15 already, and its next invoice is never computed "
         "as of an earlier date: preview it as of 2024-03-15 or later (--as-of 2024-03-15), not 2024-03-10"),
        (("bill", "--as-of", "2024-04-01", "--dry-run", "--contract", "NOPE"), "unknown contract(s): NOPE"),
        (("invoices", "preview", "--contract", "C-AUTO", "--as-of", "2099-01-01"), "cannot preview as of 2099-01-01"),
        # past the horizon: the way out names the dates a preview takes (not "or earlier": before
        # 2024-03-15, the date C-AUTO was billed as of, is refused too)
        (("invoices", "preview", "--contract", "C-AUTO", "--as-of", "2024-04-05"),
         "or preview as of a date from 2024-03-15 to 2024-04-01"),
        # an exponent or a digit separator is not read as some other amount
        (("post", "--contract", "C-AUTO", "--expect-total", "1e3"), "--expect-total '1e3' is not an amount"),
        (("post", "--contract", "C-AUTO", "--expect-total", "2_167.94"), "--expect-total '2_167.94' is not an amount"),
    ],
)
def test_mistakes_are_one_line_and_change_nothing(contoso, agent_billing_cli, args, message):
    before = warehouse_contents(contoso.engine)
    process = agent_billing_cli(*args)
    assert (process.returncode, process.stdout) == (2, "")
    assert message in one_line_error(process)
    assert warehouse_contents(contoso.engine) == before


def test_preview_of_a_contract_without_changes_or_syncs(books, agent_billing_cli):
    books.contract("C", [books.rmm("S", "12.00", "2024-03-01")], start="2024-03-01")
    process = agent_billing_cli("invoices", "preview", "--contract", "C")
    assert process.returncode == 2
    assert "no nightly sync has concluded yet" in one_line_error(process)
    with books.engine.begin() as conn:
        conn.execute(text("INSERT INTO sync_runs (snapshot_date, status) VALUES ('2024-02-20', 'gap')"))
    process = agent_billing_cli("invoices", "preview", "--contract", "C", "--format", "json")
    assert process.returncode == 0, process.stderr
    preview = json.loads(process.stdout)
    assert (preview["invoice_id"], preview["complete"], preview["lines"]) == ("INV-C-2024-03", False, [])
    # the forecast bills S at 0 units, as a run would, and says that S was never counted
    assert {k: preview["forecast"][k] for k in ("total", "counted_until", "uncounted_services")} == {
        "total": "0.00", "counted_until": "2024-02-20", "uncounted_services": ["S"]}
    table = agent_billing_cli("invoices", "preview", "--contract", "C").stdout
    assert table.splitlines()[2] == (
        "not counted yet, so at 0 units in the forecast: S (their first count sets their units)")


def test_review_says_a_pending_adjustment_gets_another_id_when_posted(books, agent_billing_cli):
    """A reviewer who quotes the id `review` shows for an adjustment would quote an id no invoice
    carries: its key ends in ``pending`` until it is posted."""
    books.contract("C-R", [books.rmm("S", "40.00", "2024-03-01")], start="2024-03-01", posting="review")
    books.count("S", "2024-03-01", 2)
    books.bill("2024-03-01")
    assert agent_billing_cli("post", "--contract", "C-R").returncode == 0
    note = "an adjustment's line id changes when it is posted"
    books.bill("2024-04-01")
    assert note not in agent_billing_cli("review").stdout  # April's normal line keeps its id
    books.service("C-R", books.rmm("S", "40.00", "2024-03-01", end_date="2024-03-10"), start="2024-03-01",
                  posting="review")
    books.bill("2024-04-01")
    review = agent_billing_cli("review").stdout
    pending_id = next(r[2] for r in rows_of(review) if len(r) > 4 and r[4] == "adjustment")
    assert note in review
    assert agent_billing_cli("post", "--contract", "C-R").returncode == 0
    posted = [x["line_id"] for x in books.invoice("INV-C-R-2024-04")["lines"] if x["kind"] == "adjustment"]
    assert len(posted) == 1 and posted[0] != pending_id
