"""A nightly run walks only the months its contract's last run left unsettled (``billing.settled``),
and bills exactly what a walk of the whole ledger bills: after any rewrite of the unit history (by
any writer, plain SQL included), a change of the contract's terms, or a run as of an earlier date.
Both engines."""

from __future__ import annotations

import itertools
import os
import threading
import time
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from agent_billing.billing import post_reviewed, run_billing
from agent_billing.billing import settled as settled_months
from agent_billing.billing import store as billing_store
from agent_billing.billing.run import bill_contract, plan_contract
from agent_billing.contracts import ContractsFileError
from agent_billing.errors import UserError
from agent_billing.sync.changes import lock_unit_history


def settled(books, contract_id: str) -> tuple[date, date] | None:
    rows = books._rows(f"SELECT settled_before, as_of FROM billing_settled WHERE contract_id = '{contract_id}'")
    return (rows[0]["settled_before"], rows[0]["as_of"]) if rows else None


def plans(engine, contract_id: str, as_of: date):
    """The plan of a run as of ``as_of`` from the settled months, and of a walk of the whole
    ledger (both rolled back): (since, lines, due, month) each."""
    out = []
    for walk_all in (False, True):
        with engine.connect() as conn, conn.begin() as transaction:
            contract = billing_store.find_contract(conn, contract_id)
            plan = plan_contract(conn, contract, as_of, walk_all=walk_all)
            out.append((plan.start.since, plan.lines, plan.due, plan.month, plan.lines_as_of))
            transaction.rollback()
    return out


def walked_services(engine, contract_id: str, as_of: date) -> frozenset[str] | None:
    """The services a run as of ``as_of`` would compute lines for, keeping the others' pending
    lines (None: it would compute every service's); rolled back."""
    with engine.connect() as conn, conn.begin() as transaction:
        contract = billing_store.find_contract(conn, contract_id)
        walked = plan_contract(conn, contract, as_of, keep_pending=True).walked
        transaction.rollback()
    return walked


def sorted_lines(lines):
    return sorted(lines, key=lambda x: x.line_key)


def pending_lines(engine, contract_id: str):
    """The contract's pending lines as stored, and the date they are as of."""
    with engine.connect() as conn:
        lines, as_of = billing_store.load_pending(conn, billing_store.find_contract(conn, contract_id))
    return sorted_lines(lines), as_of


def test_a_night_walks_from_the_first_unsettled_month(books):
    books.contract("C", [books.rmm("S", "10.00", "2024-01-01")], start="2024-01-01", billing_day=5)
    books.count("S", "2024-01-01", 4)
    books.change("S", "2024-02-10", 4, 6)
    for day in ("2024-01-05", "2024-02-05", "2024-03-05", "2024-04-05", "2024-04-20"):
        books.bill(day)
    # April's invoice (dated the 5th) is posted and March has ended: March is the last settled.
    assert settled(books, "C") == (books.d("2024-04-01"), books.d("2024-04-20"))
    incremental, whole = plans(books.engine, "C", books.d("2024-04-21"))
    assert incremental[0] == books.d("2024-04-01") and whole[0] is None
    assert incremental[1:] == whole[1:] and incremental[1] == []

    # May's invoice posted on the 5th: April is settled too (its last day and invoice date passed).
    books.bill("2024-05-05")
    assert settled(books, "C") == (books.d("2024-05-01"), books.d("2024-05-05"))


def test_a_change_rewritten_by_plain_sql_in_a_settled_month_is_corrected(books):
    books.contract("C", [books.rmm("S", "10.00", "2024-01-01")], start="2024-01-01")
    books.count("S", "2024-01-01", 4)
    change = books.change("S", "2024-02-10", 4, 6)
    for day in ("2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01", "2024-05-01"):
        books.bill(day)
    assert settled(books, "C")[0] == books.d("2024-05-01")
    # A person corrects February's change by hand: the trigger marks February stale.
    books.rewrite(change, 4, 5)
    incremental, whole = plans(books.engine, "C", books.d("2024-05-02"))
    assert incremental[0] == books.d("2024-02-01")
    assert incremental[1:] == whole[1:]
    adjusted = sorted((x.period_start.isoformat(), x.kind, x.units) for x in incremental[1])
    assert adjusted == [
        ("2024-02-10", "adjustment", -1), ("2024-03-01", "adjustment", -1),
        ("2024-04-01", "adjustment", -1), ("2024-05-01", "adjustment", -1),
    ]
    books.bill("2024-05-02")
    assert len(books.pending("C")) == 4
    # Pending lines keep February unsettled until they are posted; the stale rows are consumed.
    assert settled(books, "C")[0] == books.d("2024-02-01")
    assert books._rows("SELECT * FROM billing_stale") == []
    books.bill("2024-06-01")  # June's invoice posts them: February waits for a run that finds it unchanged
    assert settled(books, "C")[0] == books.d("2024-02-01")
    assert books.pending("C") == []
    books.bill("2024-06-02")
    assert settled(books, "C")[0] == books.d("2024-06-01")


def test_a_change_written_after_the_run_read_the_stale_rows_is_walked_by_the_same_run(books):
    """A run reads every contract's stale rows once, before it bills them one by one; each
    contract's transaction adds its rows written since: a change a sync commits in between is
    walked as a walk of the whole ledger would."""
    books.contract("C", [books.rmm("S", "10.00", "2024-01-01")], start="2024-01-01")
    books.count("S", "2024-01-01", 4)
    for day in ("2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01", "2024-04-02"):
        books.bill(day)
    assert settled(books, "C")[0] == books.d("2024-04-01")
    with books.engine.connect() as conn:
        read = settled_months.read_stale(conn)  # what run_billing reads before the first contract
    assert read.rows == {}
    books.change("S", "2024-02-10", 4, 6)  # a sync commits before the run reaches the contract
    books.concluded("2024-04-03")
    incremental, whole = plans(books.engine, "C", books.d("2024-04-03"))
    assert incremental[0] == books.d("2024-02-01") and incremental[1:] == whole[1:]
    bill_contract(books.engine, "C", books.d("2024-04-03"), stale=read)
    assert {x["period_start"].month for x in books.pending("C")} == {2, 3, 4}
    assert books._rows("SELECT * FROM billing_stale") == []


def test_a_run_never_deletes_a_stale_row_written_after_another_run_consumed_the_one_it_read(books):
    """Two runs read the same stale row; the first to bill the contract consumes it. A row
    written next must not take the consumed row's ``seq`` (SQLite's plain integer key would give
    the highest ``seq`` + 1 again, migration 0015): the second run deletes what it read."""
    books.contract("C", [books.rmm("S", "10.00", "2024-01-01")], start="2024-01-01")
    books.contract("D", [books.rmm("T", "10.00", "2024-01-01")], start="2024-01-01")
    books.count("S", "2024-01-01", 4)
    books.count("T", "2024-01-01", 4)
    for day in ("2024-01-01", "2024-02-01", "2024-03-01", "2024-03-02"):
        books.bill(day)
    books.change("S", "2024-02-10", 4, 6)
    books.concluded("2024-03-03")
    with books.engine.connect() as conn:
        nightly = settled_months.read_stale(conn)  # the nightly run reads C's row ...
    books.bill("2024-03-03", contract_ids=["C"])  # ... `bill --contract C` consumes it first
    books.change("T", "2024-01-20", 4, 5)  # a sync marks D's January stale
    bill_contract(books.engine, "C", books.d("2024-03-03"), stale=nightly)
    assert [(r["contract_id"], r["from_date"]) for r in books._rows("SELECT * FROM billing_stale")] == [
        ("D", books.d("2024-01-20"))]
    books.bill("2024-03-04")
    assert {x["period_start"].month for x in books.pending("D")} == {1, 2, 3}


def _until_done_or_waiting(engine, thread: threading.Thread, pids: dict, name: str) -> None:
    """Wait until ``thread`` has finished or its session (``pids[name]``) waits on a lock."""
    with engine.connect() as watch:
        for _ in range(600):
            if not thread.is_alive() or (name in pids and watch.execute(
                    text("SELECT count(*) FROM pg_locks WHERE pid = :pid AND NOT granted"),
                    {"pid": pids[name]}).scalar()):
                return
            time.sleep(0.05)
    raise AssertionError(f"{name} neither finished nor waited on a lock in 30 s")


@pytest.mark.parametrize("warehouse_url", ["postgresql"], indirect=True)
def test_a_change_by_hand_sql_committed_around_a_sync_and_a_run_s_read_is_billed_that_night(books):
    """A person's SQL inserts a change (it takes a ``seq``) and commits late: after a sync writes
    a change of another contract and after a billing run read the stale rows. Rows must commit in
    ``seq`` order (migration 0019: every writer takes the unit-history lock until it commits), or
    the hand change's row falls below the range the contract's transaction reads and the night
    keeps its service's pending lines without it."""
    services = [books.rmm(s, "10.00", "2024-01-01") for s in ("A", "B")]
    books.contract("C", services, start="2024-01-01", posting="review")
    books.contract("D", [books.rmm("T", "10.00", "2024-01-01")], start="2024-01-01")
    for s in ("A", "B", "T"):
        books.count(s, "2024-01-01", 4)
    for day in ("2024-01-01", "2024-01-02", "2024-01-03"):
        books.bill(day)
    books.concluded("2024-01-04")

    outcome: dict = {}
    pids: dict = {}

    def sync_writes_a_change() -> None:
        with books.engine.begin() as conn:
            pids["sync"] = conn.execute(text("SELECT pg_backend_pid()")).scalar()
            lock_unit_history(conn)
            conn.execute(text(
                "INSERT INTO unit_changes (change_id, service_id, effective_date, units_before, "
                "units_after, delta, source) VALUES ('T:2024-01-03', 'T', '2024-01-03', 4, 5, 1, 'nightly_sync')"))

    def run_reads_the_stale_rows() -> None:
        with books.engine.connect() as conn:
            outcome["read"] = settled_months.read_stale(conn)

    with books.engine.connect() as hand:
        hand.execute(text(
            "INSERT INTO unit_changes (change_id, service_id, effective_date, units_before, "
            "units_after, delta, source) VALUES ('B:2024-01-02', 'B', '2024-01-02', 4, 6, 2, 'manual')"))
        sync = threading.Thread(target=sync_writes_a_change)
        sync.start()
        _until_done_or_waiting(books.engine, sync, pids, "sync")  # it waits for the hand's lock
        read = threading.Thread(target=run_reads_the_stale_rows)
        read.start()
        read.join(timeout=30)  # the run reads while the hand's change is not committed yet
        hand.commit()
    sync.join(timeout=30)
    assert "read" in outcome and not sync.is_alive()

    whole = plans(books.engine, "C", books.d("2024-01-04"))[1]
    bill_contract(books.engine, "C", books.d("2024-01-04"), stale=outcome["read"])
    assert pending_lines(books.engine, "C") == (sorted_lines(whole[1]), books.d("2024-01-04"))
    assert any(x["service_id"] == "B" and x["period_start"] == books.d("2024-01-02") for x in books.pending("C"))


def test_a_night_rewrites_only_the_pending_lines_of_services_that_changed(books):
    """A nightly run keeps the pending lines of the services nothing changed for (their lines as
    of the night before still hold) and computes only the others'. What it leaves pending is what
    a walk of the whole ledger computes: after a sync's change, a change dated ahead that comes
    into effect (no stale row then), a rename, and a review posting."""
    services = [books.rmm(s, "10.00", "2024-01-01") for s in ("A", "B", "C")]
    books.contract("R", services, start="2024-01-01", posting="review")
    for s in ("A", "B", "C"):
        books.count(s, "2024-01-01", 4)
    books.bill("2024-01-01")
    books.bill("2024-01-02")

    def night(day: str, walked: set[str] | None) -> None:
        books.concluded(day)
        assert walked_services(books.engine, "R", books.d(day)) == walked, day
        whole = plans(books.engine, "R", books.d(day))[1]
        books.bill(day)
        assert pending_lines(books.engine, "R") == (
            sorted_lines(whole[1]), books.d(day) if whole[1] else None), day

    books.change("A", "2024-01-03", 4, 6)
    books.change("B", "2024-01-20", 4, 5, "manual")  # recorded now, in effect from the 20th
    night("2024-01-03", {"A", "B"})  # B's stale row: walked, nothing to bill yet
    night("2024-01-04", set())  # nothing changed: every line kept, dated as of the 4th
    books.change("C", "2024-01-05", 4, 3)
    night("2024-01-05", {"C"})
    night("2024-01-19", set())
    night("2024-01-20", {"B"})  # no stale row: its change comes into effect
    assert {x["service_id"] for x in books.pending("R")} == {"A", "B", "C"}

    books.contract("R", [services[0], {**services[1], "name": "Servers"}, services[2]],
                   start="2024-01-01", posting="review")
    night("2024-01-21", None)  # a name in the kept lines' descriptions: every service walked
    assert any("Servers" in x["description"] for x in books.pending("R"))
    night("2024-01-22", set())

    post_reviewed(books.engine, "R")  # posted: the month may expect something else now
    night("2024-01-23", None)
    night("2024-02-01", None)  # a new invoice month


def test_new_terms_or_an_earlier_date_walk_the_whole_ledger(books):
    books.contract("C", [books.rmm("S", "10.00", "2024-01-01")], start="2024-01-01")
    books.count("S", "2024-01-01", 4)
    for day in ("2024-01-01", "2024-02-01", "2024-03-01", "2024-03-10"):
        books.bill(day)
    assert plans(books.engine, "C", books.d("2024-03-11"))[0][0] == books.d("2024-03-01")
    # An earlier date than the one recorded: the whole ledger.
    assert plans(books.engine, "C", books.d("2024-03-09"))[0][0] is None

    # The service ended on 15 February after all: the whole ledger is walked and corrected.
    books.contract("C", [books.rmm("S", "10.00", "2024-01-01", end_date="2024-02-15")],
                   start="2024-01-01")
    incremental, whole = plans(books.engine, "C", books.d("2024-03-11"))
    assert incremental[0] is None and incremental[1:] == whole[1:]
    assert {x.period_start.month for x in incremental[1] if x.kind == "adjustment"} == {2, 3}

    # Its corrections wait pending: February stays unsettled until April's invoice posts them.
    books.bill("2024-03-11")
    assert plans(books.engine, "C", books.d("2024-03-12"))[0][0] == books.d("2024-02-01")
    books.bill("2024-04-01")  # ... and the next night finds February to April unchanged
    assert plans(books.engine, "C", books.d("2024-04-02"))[0][0] == books.d("2024-02-01")
    books.bill("2024-04-02")
    assert plans(books.engine, "C", books.d("2024-04-03"))[0][0] == books.d("2024-04-01")
    # A different first count (a backfilled night) changes the starting units: the whole ledger.
    books._exec("UPDATE service_unit_counts SET units = 5 WHERE service_id = 'S'")
    incremental, whole = plans(books.engine, "C", books.d("2024-04-03"))
    assert incremental[0] is None and incremental[1:] == whole[1:] and incremental[1]


def test_a_new_services_first_count_walks_only_the_unsettled_months(books):
    """A service starting in a month left unsettled has no line in a settled month: its first
    count (its starting units) walks the unsettled months of every service, not the ledger."""
    books.contract("C", [books.rmm("S", "10.00", "2024-01-01")], start="2024-01-01")
    books.count("S", "2024-01-01", 4)
    for day in ("2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01", "2024-04-02"):
        books.bill(day)
    books.contract("C", [books.rmm("S", "10.00", "2024-01-01"), books.rmm("N", "10.00", "2024-04-10")],
                   start="2024-01-01")
    assert plans(books.engine, "C", books.d("2024-04-09"))[0][0] is None  # a service added
    books.bill("2024-04-09")
    assert walked_services(books.engine, "C", books.d("2024-04-10")) == frozenset()
    books.count("N", "2024-04-10", 3)
    incremental, whole = plans(books.engine, "C", books.d("2024-04-10"))
    assert incremental[0] == books.d("2024-04-01") and incremental[1:] == whole[1:]
    assert [(x.service_id, x.units) for x in incremental[1]] == [("N", 3)]
    assert walked_services(books.engine, "C", books.d("2024-04-10")) is None  # every service
    books.bill("2024-04-10")
    books.concluded("2024-04-11")
    assert walked_services(books.engine, "C", books.d("2024-04-11")) == frozenset()  # kept again
    # Moved to start in a settled month, its terms are the settled months' again: the ledger.
    books.contract("C", [books.rmm("S", "10.00", "2024-01-01"), books.rmm("N", "10.00", "2024-03-20")],
                   start="2024-01-01")
    incremental, whole = plans(books.engine, "C", books.d("2024-04-11"))
    assert incremental[0] is None and incremental[1:] == whole[1:]


def detected(books, at: str, *change_ids: str) -> None:
    """Set when the changes were observed (the order of changes effective on one day)."""
    for change_id in change_ids:
        books._exec("UPDATE unit_changes SET detected_at = :at WHERE change_id = :c", at=at, c=change_id)


def test_a_month_whose_lines_were_posted_is_walked_again_before_it_settles(books):
    """A month's expected lines can depend on its own posted lines (changes effective on its
    first day that its normal line absorbed): after history is rewritten there, posting the
    corrections changes what the month expects once more, so the month stays unsettled until a
    run finds nothing to change in it."""
    books.contract("C", [books.rmm("S", "10.00", "2024-01-01")], start="2024-01-01")
    books.count("S", "2024-01-01", 5)
    books.bill("2024-01-01")
    books.bill("2024-02-01")
    feb = books.change("S", "2024-02-10", 5, 7)
    books.bill("2024-03-01")  # March's normal line: 7 units
    press = books.change("S", "2024-03-01", 7, 6, "get_units_now")  # known after March's invoice
    detected(books, "2024-03-02 10:00:00", feb, press)
    books.bill("2024-03-02")
    books.bill("2024-04-01")  # its prorated line posted
    # A backfill rewrites history: no February change, and 5 -> 6 -> 5 on March 1st.
    books.delete(feb)
    books.rewrite(press, 5, 6)
    detected(books, "2024-03-03 10:00:00", books.change("S", "2024-03-01", 6, 5, "manual"))
    for day in ("2024-05-01", "2024-05-02", "2024-06-01", "2024-06-02"):
        incremental, whole = plans(books.engine, "C", books.d(day))
        assert incremental[1:] == whole[1:], day
        books.bill(day)
    assert settled(books, "C")[0] == books.d("2024-06-01")


def test_an_update_that_would_move_a_change_or_a_service_is_refused(books):
    books.contract("C", [books.rmm("S", "10.00", "2024-01-01")], start="2024-01-01")
    books.contract("D", [books.rmm("T", "10.00", "2024-01-01")], start="2024-01-01")
    change = books.change("S", "2024-02-10", 5, 7)
    for sql, message in (
        (f"UPDATE unit_changes SET effective_date = '2024-03-10' WHERE change_id = '{change}'",
         "delete it and insert the corrected change"),
        ("UPDATE services SET contract_id = 'D' WHERE service_id = 'S'",
         "a service cannot move to another contract"),
    ):
        with pytest.raises(DBAPIError, match=message):
            books._exec(sql)
    books.rewrite(change, 5, 6)  # its units can be corrected in place
    assert [r["units_after"] for r in books._rows("SELECT units_after FROM unit_changes")] == [6]


# -- a random differential test: the settled months change nothing a night bills

SOURCES = ("nightly_sync", "get_units_now", "manual")
FIRST = date(2024, 1, 1)
DAYS = 240  # January to August 2024

days = st.integers(0, DAYS - 1).map(lambda n: FIRST + timedelta(days=n))
first_days = st.integers(1, 8).map(lambda m: date(2024, m, 1))  # day-one changes: absorbed or not
bills = st.tuples(st.just("bill"), st.integers(0, 45))  # days after the latest run (0: an earlier one)
operations = st.one_of(
    bills, bills, bills, bills, bills,
    st.tuples(st.just("change"), st.integers(0, 1), st.one_of(days, first_days), st.sampled_from(SOURCES),
              st.integers(0, 9)),
    st.tuples(st.just("delete"), st.integers(0, 50)),
    st.tuples(st.just("contract"), st.sampled_from([FIRST, date(2024, 1, 20), date(2024, 2, 3)]),
              st.integers(1, 28)),
    st.tuples(st.just("end"), st.integers(0, 1), st.one_of(st.none(), days)),
    st.tuples(st.just("count"), st.integers(0, 1), days, st.integers(0, 9)),
    st.tuples(st.just("post_review"),),
    st.tuples(st.just("rename"), st.integers(0, 1)),
    st.tuples(st.just("move"), st.integers(0, 1), days),  # a service's start date, across a boundary or not
)
_examples = itertools.count()


@settings(max_examples=int(os.environ.get("SETTLED_EXAMPLES", "25")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(billing_day=st.integers(1, 28), posting=st.sampled_from(["automatic", "review"]),
       service_starts=st.tuples(days, days), ops=st.lists(operations, min_size=6, max_size=24))
def test_a_night_from_the_settled_months_bills_what_the_whole_ledger_bills(
    books, billing_day, posting, service_starts, ops
):
    n = next(_examples)  # one warehouse per test: each example has its own contract and services
    cid, sids = f"C{n}", [f"S{n}a", f"S{n}b"]
    terms = {sid: {"start": start, "end": None}
             for sid, start in zip(sids, sorted(service_starts), strict=True)}
    contract = {"start": FIRST, "billing_day": billing_day}

    def apply() -> None:
        books.contract(cid, [
            books.rmm(sid, "12.50", t["start"].isoformat(),
                      **({"end_date": t["end"].isoformat()} if t["end"] else {}),
                      **({"name": t["name"]} if "name" in t else {}))
            for sid, t in terms.items()
        ], start=contract["start"].isoformat(), billing_day=contract["billing_day"], posting=posting)

    apply()
    for sid, start in zip(sids, sorted(service_starts), strict=True):
        books.count(sid, start.isoformat(), 3)
    latest = FIRST
    for op in ops:
        kind = op[0]
        if kind == "bill":
            as_of = latest + timedelta(days=op[1]) if op[1] else latest - timedelta(days=9)
            as_of = max(as_of, FIRST)
            books.concluded(as_of.isoformat())
            incremental, whole = plans(books.engine, cid, as_of)
            assert incremental[1:] == whole[1:], (op, incremental[0])
            walked = walked_services(books.engine, cid, as_of)
            event(("from a settled month" if incremental[0] else "the whole ledger")
                  + (", with lines" if incremental[1] else ", no lines")
                  + ("" if walked is None else f", {len(walked)} of 2 services walked"))
            run_billing(books.engine, as_of, contract_ids=[cid]).raise_for_failures()
            if not whole[2]:  # kept pending: the lines written, kept or not, are the whole ledger's
                assert pending_lines(books.engine, cid) == (
                    sorted_lines(whole[1]), whole[4] if whole[1] else None), op
            latest = max(latest, as_of)
        elif kind == "change":
            _, which, day, source, after = op
            books._exec(
                "DELETE FROM unit_changes WHERE service_id = :s AND effective_date = :d AND source = :src",
                s=sids[which], d=day, src=source)
            before = (after + 1) % 10
            books._exec(
                "INSERT INTO unit_changes (change_id, service_id, effective_date, units_before, "
                "units_after, delta, source) VALUES (:c, :s, :d, :b, :a, :delta, :src)",
                c=f"{sids[which]}:{day}:{source}", s=sids[which], d=day, b=before, a=after,
                delta=after - before, src=source)
        elif kind == "delete":
            ids = [r["change_id"] for r in books._rows(
                f"SELECT change_id FROM unit_changes WHERE service_id IN ('{sids[0]}', '{sids[1]}') "
                "ORDER BY change_id")]
            if ids:
                books.delete(ids[op[1] % len(ids)])
        elif kind in ("end", "contract", "rename", "move"):
            before = {sid: dict(t) for sid, t in terms.items()}
            if kind == "move":
                service = terms[sids[op[1]]]
                service["start"] = op[2] if service["end"] is None or op[2] <= service["end"] else service["start"]
            elif kind == "rename":
                terms[sids[op[1]]]["name"] = f"Renamed {op[1]}"
            elif kind == "end":
                service = terms[sids[op[1]]]
                service["end"] = op[2] if op[2] is None or op[2] >= service["start"] else None
            else:
                contract.update(start=op[1], billing_day=op[2])
            try:
                apply()
            except ContractsFileError:
                terms.update(before)
        elif kind == "count":
            _, which, day, units = op
            books.concluded(day.isoformat())
            books._exec("DELETE FROM service_unit_counts WHERE service_id = :s AND snapshot_date = :d",
                        s=sids[which], d=day)
            books._exec("INSERT INTO service_unit_counts (service_id, snapshot_date, units) "
                        "VALUES (:s, :d, :u)", s=sids[which], d=day, u=units)
        elif kind == "post_review":
            try:
                post_reviewed(books.engine, cid)
            except UserError:
                pass
    # The last night: what the settled months leave pending is what the whole ledger leaves.
    as_of = latest + timedelta(days=1)
    books.concluded(as_of.isoformat())
    incremental, whole = plans(books.engine, cid, as_of)
    assert incremental[1:] == whole[1:]
