"""SPEC §5 "Billing horizon": no run bills beyond today or the latest concluded nightly sync."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from tests.billing.conftest import one_line_error, warehouse_contents

from agent_billing.billing import BillingHorizonError, billing_horizon, run_billing
from agent_billing.errors import UserError

D = date.fromisoformat


@pytest.fixture
def billed(books):
    """An automatic and a review contract billed as of March 1st; a change waits in review."""
    books.auto_and_review()
    books.bill("2024-03-01")
    books.change("S-WS", "2024-03-15", 10, 11)
    books.bill("2024-03-15")
    assert len(books.pending()) == 2  # the change and the review contract's March line
    return books


def test_a_date_beyond_the_latest_concluded_sync_is_refused(billed):
    billed.concluded("2024-03-20", "quarantined")  # not concluded: it may still change
    billed.concluded("2024-04-01", "failed")
    before = warehouse_contents(billed.engine)
    with pytest.raises(BillingHorizonError, match=(
            r"cannot bill as of 2024-04-01: the latest concluded sync date is 2024-03-15; "
            r"2024-03-20 is quarantined: release or discard it \(`agent-billing snapshots release\|discard "
            r"2024-03-20`\); 2024-04-01 is failed: re-run its sync \(`agent-billing sync --date 2024-04-01`\); "
            r"run the nightly sync up to 2024-04-01, or bill as of 2024-03-15 or earlier$")):
        run_billing(billed.engine, D("2024-04-01"))
    with pytest.raises(BillingHorizonError, match=(  # nothing recorded after the latest: sync it
            r"the latest concluded sync date is 2024-03-15; run the nightly sync up to 2024-03-19 first, "
            r"or bill as of 2024-03-15 or earlier$")):
        run_billing(billed.engine, D("2024-03-19"))
    assert warehouse_contents(billed.engine) == before  # nothing posted, review unchanged
    for day in range(16, 20):  # every night up to the quarantined one ran: only that one holds it
        billed.concluded(f"2024-03-{day}", "complete")
    with pytest.raises(BillingHorizonError, match=(
            r"the latest concluded sync date is 2024-03-19; 2024-03-20 is quarantined: release or discard it "
            r"\(`agent-billing snapshots release\|discard 2024-03-20`\), or bill as of 2024-03-19 or earlier$")):
        run_billing(billed.engine, D("2024-03-20"))
    assert issubclass(BillingHorizonError, UserError)


@pytest.mark.parametrize("status", ["gap", "discarded", "complete"])
def test_gap_and_discarded_dates_have_concluded(billed, status):
    billed.concluded("2024-04-01", status)
    summary = run_billing(billed.engine, D("2024-04-01"))
    assert summary.invoices_posted == 1 and summary.failed == ()
    assert billing_horizon_of(billed) == D("2024-04-01")


def billing_horizon_of(books, today: date | None = None) -> date | None:
    with books.engine.connect() as conn:
        return billing_horizon(conn, today)


def test_a_date_after_today_in_the_billing_timezone_is_refused(billed, monkeypatch):
    billed.concluded("2024-04-01")
    monkeypatch.setenv("AGENT_BILLING_TIMEZONE", "Europe/Amsterdam")
    before = warehouse_contents(billed.engine)
    with pytest.raises(BillingHorizonError, match=(
            r"cannot bill as of 2024-04-01: it is later than today \(2024-03-31, Europe/Amsterdam\); "
            r"the latest concluded sync date is 2024-04-01")):
        run_billing(billed.engine, D("2024-04-01"), today=D("2024-03-31"))
    assert warehouse_contents(billed.engine) == before
    assert billing_horizon_of(billed, today=D("2024-03-31")) == D("2024-03-31")
    assert run_billing(billed.engine, D("2024-04-01"), today=D("2024-04-01")).invoices_posted == 1


def test_without_any_concluded_sync_nothing_is_billed(books):
    books.contract("C", [books.rmm("S", "12.00", "2024-03-01")], start="2024-03-01")
    books.concluded("2024-03-01", "quarantined")
    with pytest.raises(BillingHorizonError, match="no nightly sync has concluded yet"):
        run_billing(books.engine, D("2024-03-01"))
    assert books.invoices() == {} and books.pending() == []
    assert billing_horizon_of(books) is None


def test_the_default_today_is_the_real_date(books):
    """Without an injected ``today`` the rule uses the real date: tomorrow is always refused."""
    books.contract("C", [books.rmm("S", "12.00", "2024-03-01")], start="2024-03-01")
    tomorrow = date.today() + timedelta(days=2)  # beyond today in every timezone
    books.concluded(tomorrow.isoformat())
    with pytest.raises(BillingHorizonError, match="later than today"):
        run_billing(books.engine, tomorrow)


@pytest.mark.parametrize(
    ("as_of", "message"),
    [
        ("2099-12-01", "cannot bill as of 2099-12-01: it is later than today"),
        ("2024-03-16", "cannot bill as of 2024-03-16: the latest concluded sync date is 2024-03-15"),
    ],
)
def test_the_command_line_refuses_beyond_the_horizon(billed, agent_billing_cli, as_of, message):
    billed.concluded("2099-12-01")  # even a sync record for the future does not make it billable
    if as_of == "2024-03-16":
        billed._exec("DELETE FROM sync_runs WHERE snapshot_date > '2024-03-15'")
    before = warehouse_contents(billed.engine)
    for args in (("bill", "--as-of", as_of), ("bill", "--as-of", as_of, "--dry-run"),
                 ("invoices", "preview", "--contract", "C-AUTO", "--as-of", as_of)):
        process = agent_billing_cli(*args)
        assert (process.returncode, process.stdout) == (2, ""), process.stderr
        # the refusal names what was asked: a preview is not a billing run
        said = message.replace("cannot bill", "cannot preview") if args[0] == "invoices" else message
        assert said in one_line_error(process)
    assert warehouse_contents(billed.engine) == before
