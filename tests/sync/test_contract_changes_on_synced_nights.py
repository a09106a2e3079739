"""A counted service made countable on nights already synced (a new service starting in the
past, a start moved earlier, an end moved later or removed, the same for its contract) has no
count on them: apply names those nights and records them, no invoice of the contract is posted
until they are re-run, and re-running them counts the service as if it had been active all
along; nights that a re-run cannot count (no landing, no extract of the view) are named as such."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from copy import deepcopy
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from agent_billing.billing import run_billing
from agent_billing.billing.post import NightsNotCounted
from agent_billing.billing.preview import preview_invoice
from agent_billing.billing.review import held_by_uncounted_nights, pending_lines, post_reviewed
from agent_billing.cli.sync_cmds import _bill_the_night
from agent_billing.contracts import run_contracts
from agent_billing.contracts.apply import uncounted_nights
from agent_billing.contracts.recount import accept_uncounted
from agent_billing.errors import OperationFailed, UserError
from agent_billing.sync.pipeline import (
    RawFolderMissing,
    count_step,
    diff_step,
    load_step,
    release_snapshot,
)

from .conftest import CONTRACT, DAYS, VIEW, write_landing

ROOT = Path(__file__).resolve().parents[2]

D1, D2, D3 = sorted(DAYS)


def the_contract(contract: dict) -> dict:
    return contract["accounts"][0]["contracts"][0]


def service(contract: dict, service_id: str) -> dict:
    return next(s for s in the_contract(contract)["services"] if s["service_id"] == service_id)


def sync(engine, settings, days, *, mutate=None) -> None:
    for day in days:
        if not (settings.raw_path / day.isoformat()).exists():
            write_landing(settings.raw_path, day, *DAYS[day], mutate=mutate)
        for step in (load_step, count_step, diff_step):
            step(engine, settings, day)


def counts(engine, service_id: str) -> dict:
    with engine.connect() as conn:
        return {str(d)[:10]: u for d, u in conn.execute(text(
            "SELECT snapshot_date, units FROM service_unit_counts WHERE service_id = :s ORDER BY 1"),
            {"s": service_id})}


def cli(*args: str) -> subprocess.CompletedProcess:
    """The real command line on the test's warehouse (``AIRFLOW_CONN_BILLING_WAREHOUSE``)."""
    return subprocess.run([sys.executable, "-m", "agent_billing.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "include")}, timeout=120, check=False)


def to_recount(engine) -> dict:
    with engine.connect() as conn:
        return {(s, str(d)[:10]) for s, d in conn.execute(text(
            "SELECT service_id, snapshot_date FROM nights_to_recount"))}


def with_reference(contract: dict) -> dict:
    """The contract with S-REF: S-WS's scope, active all along (what S-WS counts when active).
    It belongs to another contract, so that changing C-CONTOSO's dates leaves it counted."""
    reference = deepcopy(the_contract(contract))
    reference.update(contract_id="C-REF", start_date="2024-01-01", notify_emails=[],
                     services=[{**service(contract, "S-WS"), "service_id": "S-REF", "name": "Reference"}])
    reference.pop("end_date", None)
    contract["accounts"][0]["contracts"].append(reference)
    return contract


def as_is(contract: dict) -> dict:
    return contract


def ws_from(day):
    def change(contract: dict) -> dict:
        service(contract, "S-WS")["start_date"] = day.isoformat()
        return contract
    return change


def ending(entry, day):
    """A change that ends ``entry(contract)`` on ``day`` (None: open-ended)."""
    def change(contract: dict) -> dict:
        entry(contract).pop("end_date", None)
        if day is not None:
            entry(contract)["end_date"] = day.isoformat()
        return contract
    return change


def ws_until(day):
    return ending(lambda contract: service(contract, "S-WS"), day)


def contract_until(day):
    return ending(the_contract, day)


def ws_twin_from(day):
    def change(contract: dict) -> dict:
        the_contract(contract)["services"].append(
            {**service(contract, "S-WS"), "service_id": "S-WS2", "name": "Workstations again",
             "start_date": day.isoformat()})
        return contract
    return change


#: (the contract the nights were synced with, the change applied afterwards, the service, the nights named)
CASES = {
    "a new service starting in the past": (as_is, ws_twin_from(D1), "S-WS2", (D1, D3)),
    "a start moved earlier": (ws_from(D3), ws_from(D1), "S-WS", (D1, D2)),
    "an end removed": (ws_until(D1), ws_until(None), "S-WS", (D2, D3)),
    "a window moved earlier, named where it is now": (ws_from(D3), lambda c: ws_until(D1)(ws_from(D1)(c)), "S-WS",
                                                      (D1, D1)),
    "the contract's end removed": (contract_until(D1), contract_until(None), "S-WS", (D2, D3)),
}


@pytest.mark.parametrize("warehouse_url", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("case", CASES)
def test_nights_synced_before_a_service_was_countable_are_named_and_a_re_run_counts_them(
        warehouse, settings, monkeypatch, case):
    monkeypatch.setenv("AGENT_BILLING_RAW_PATH", str(settings.raw_path))
    synced_with, change, service_id, (first, last) = CASES[case]
    run_contracts(warehouse, synced_with(with_reference(deepcopy(CONTRACT))))
    sync(warehouse, settings, (D1, D2, D3))
    assert len(counts(warehouse, "S-REF")) == 3

    contract = change(synced_with(with_reference(deepcopy(CONTRACT))))
    plan = run_contracts(warehouse, contract)

    nights = (last - first).days + 1
    named = [w for w in plan.uncounted if w.startswith(f"service {service_id}")]
    assert len(named) == 1 and len(plan.uncounted) == (4 if "contract" in case else 1), plan.uncounted
    span = f"{first} to {last}" if nights > 1 else f"{first}"
    assert f"is now active on {nights} synced night(s) that did not count it ({span}): re-run them" in named[0]
    named_nights = {(service_id, str(first + timedelta(days=n))) for n in range(nights)}
    assert {(s, d) for s, d in to_recount(warehouse) if s == service_id} == named_nights
    assert run_contracts(warehouse, contract).uncounted == []  # applied again: nothing newly countable
    assert {(s, d) for s, d in to_recount(warehouse) if s == service_id} == named_nights  # and still recorded

    sync(warehouse, settings, [first + timedelta(days=n) for n in range(nights)])  # the runbook's remedy
    assert to_recount(warehouse) == set()
    reference = counts(warehouse, "S-REF")
    assert counts(warehouse, service_id) == {d: u for d, u in reference.items() if d in counts(warehouse, service_id)}
    assert {str(first + timedelta(days=n)) for n in range(nights)} <= counts(warehouse, service_id).keys()


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_nights_whose_landing_has_no_extract_of_the_view_hold_the_invoice_until_a_person_accepts_them(
        warehouse, settings, monkeypatch):
    """The extract lands only the views of services active that night: a view-scoped service
    added in the past cannot be counted by a re-run of those nights. Its days would bill at the
    units of a later night, which nobody measured: told on stderr only, nothing recorded, and
    the invoice posted them. They are recorded and hold the invoice until a person accepts
    them, all at once; then it posts."""
    monkeypatch.setenv("AGENT_BILLING_RAW_PATH", str(settings.raw_path))
    contract = deepcopy(CONTRACT)
    the_contract(contract)["services"] = [s for s in the_contract(contract)["services"] if s["service_id"] != "S-VIEW"]
    run_contracts(warehouse, contract)
    sync(warehouse, settings, (D1, D2, D3), mutate=lambda records: records.pop(f"agents_in_view/{VIEW}.jsonl.gz"))

    [warning] = run_contracts(warehouse, CONTRACT).uncounted
    assert warning == (
        f"service S-VIEW is now active on 3 synced night(s) that did not count it ({D1} to {D3}); all of them cannot "
        f"be recounted ({D1} to {D3}: their landing is gone or holds no extract of view {VIEW}, which no active "
        "service used that night): billed, those days would be at the units of another night, so no invoice of its "
        f"contract is posted until a person accepts them (agent-billing snapshots accept-uncounted {D1} --through "
        f"{D3} --service S-VIEW)")
    assert to_recount(warehouse) == {("S-VIEW", str(d)) for d in (D1, D2, D3)}
    [failed] = run_billing(warehouse, D3).failed
    assert failed.contract_id == "C-CONTOSO" and f"service S-VIEW on {D1} to {D3}" in failed.error

    with pytest.raises(UserError, match=f"--through {D1} is before {D3}"):
        accept_uncounted(warehouse, "S-VIEW", D3, D1)
    accepted = cli("snapshots", "accept-uncounted", str(D1), "--through", str(D3), "--service", "S-VIEW")
    assert accepted.returncode == 0 and accepted.stdout == (
        f"service S-VIEW: nights {D1} to {D3} accepted uncounted (their days bill at the units of another night)\n"
    ), accepted.stderr
    assert to_recount(warehouse) == set()
    summary = run_billing(warehouse, D3)
    assert not summary.failed
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM invoices WHERE contract_id = 'C-CONTOSO'")).scalar() == 1


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_re_run_that_still_cannot_count_the_service_keeps_its_night_for_a_person(warehouse, settings, monkeypatch,
                                                                                   tmp_path):
    """Recorded by an apply that could not see the landings, a night whose landing has no
    extract of the service's view is re-run without a count: it stays held until a person
    accepts it. A night a re-run can count is not accepted: it is re-run."""
    contract = deepcopy(CONTRACT)
    the_contract(contract)["services"] = [s for s in the_contract(contract)["services"] if s["service_id"] != "S-VIEW"]
    run_contracts(warehouse, contract)
    sync(warehouse, settings, (D1, D2, D3), mutate=lambda records: records.pop(f"agents_in_view/{VIEW}.jsonl.gz"))
    monkeypatch.setenv("AGENT_BILLING_RAW_PATH", str(tmp_path / "not-mounted"))
    run_contracts(warehouse, ws_twin_from(D2)(deepcopy(CONTRACT)))
    assert to_recount(warehouse) == {("S-VIEW", str(d)) for d in (D1, D2, D3)} | {("S-WS2", str(d)) for d in (D2, D3)}

    sync(warehouse, settings, (D2,))
    assert to_recount(warehouse) == {("S-VIEW", str(D1)), ("S-VIEW", str(D2)), ("S-VIEW", str(D3)), ("S-WS2", str(D3))}
    monkeypatch.setenv("AGENT_BILLING_RAW_PATH", str(settings.raw_path))
    with pytest.raises(UserError, match=f"night {D3}'s landing can count service S-WS2: re-run it"):
        accept_uncounted(warehouse, "S-WS2", D3)
    accept_uncounted(warehouse, "S-VIEW", D2)  # its landing has no extract of the view
    assert ("S-VIEW", str(D2)) not in to_recount(warehouse)
    agents = settings.raw_path / D3.isoformat() / "agents.jsonl.gz"
    agents.write_bytes(agents.read_bytes()[:-8])  # damaged: a re-run refuses the landing
    accept_uncounted(warehouse, "S-WS2", D3)
    assert ("S-WS2", str(D3)) not in to_recount(warehouse)


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_the_night_of_today_is_named_for_a_service_active_before_today(warehouse, settings):
    """Today's night ran before the apply. A service starting today is first counted by the next
    night, as any new service: today's night is not named. A service active before today was
    not counted on it either: left out, its change of today was found by the next night, a day
    late, and nothing said to re-run today's night."""
    run_contracts(warehouse, CONTRACT)
    sync(warehouse, settings, (D1, D2, D3))
    run_contracts(warehouse, ws_twin_from(D3)(deepcopy(CONTRACT)))
    with warehouse.connect() as conn:
        assert uncounted_nights(conn, ["S-WS2"], D3) == set()
    run_contracts(warehouse, ws_twin_from(D1)(deepcopy(CONTRACT)))
    with warehouse.connect() as conn:
        assert {night for _, _, night in uncounted_nights(conn, ["S-WS2"], D3)} == {D1, D2, D3}


def test_a_re_run_that_finds_changes_says_it_queued_their_mail(warehouse, settings):
    """A contract with a workstation service from the 1st is added after three nights synced;
    the 2nd is re-run. Its count re-derives the night's changes and queues the new contract's
    mail in its own transaction, so the diff after it finds it queued. The count's result said
    nothing of the mail and the diff's said 0: an operator read that no mail went out."""
    run_contracts(warehouse, CONTRACT)
    sync(warehouse, settings, (D1, D2, D3))
    added = deepcopy(CONTRACT)
    added["accounts"][0]["contracts"].append({
        "contract_id": "C-NEW", "currency": "USD", "start_date": D1.isoformat(),
        "notify_emails": ["it@contoso.example"],
        "services": [{**service(CONTRACT, "S-WS"), "service_id": "S-NEW", "start_date": D1.isoformat()}]})
    run_contracts(warehouse, added)
    for night in (D1, D2):
        load_step(warehouse, settings, night)
        counted = count_step(warehouse, settings, night)
        diffed = diff_step(warehouse, settings, night)
    with warehouse.connect() as conn:
        [subject] = conn.execute(text(
            "SELECT subject FROM notification_outbox WHERE message_id LIKE 'unit-changes:C-NEW:%'")).scalars()
    assert subject == f"[agent-billing] Unit changes for C-NEW on {D2}"
    assert (counted.detail["mail_queued"], diffed.detail["mail_queued"]) == (1, 0)


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_an_apply_after_today_s_night_names_it_for_a_service_active_before(warehouse, settings, monkeypatch):
    """Through apply, on the real clock: today's night has run when a service starting on an
    earlier synced night is added; today's night is named and recorded with it."""
    from agent_billing.settings import get_settings

    monkeypatch.setenv("AGENT_BILLING_RAW_PATH", str(settings.raw_path))
    today = datetime.now(get_settings().tz).date()
    run_contracts(warehouse, CONTRACT)
    sync(warehouse, settings, (D1,))
    write_landing(settings.raw_path, today, *DAYS[D3])
    for step in (load_step, count_step, diff_step):
        step(warehouse, settings, today)
    [warning] = run_contracts(warehouse, ws_twin_from(D1)(deepcopy(CONTRACT))).uncounted
    assert warning.startswith(f"service S-WS2 is now active on 2 synced night(s) that did not count it "
                              f"({D1}, {today}): re-run them"), warning
    assert to_recount(warehouse) == {("S-WS2", str(D1)), ("S-WS2", str(today))}


@pytest.mark.parametrize("warehouse_url", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("posting", ["automatic", "review"])
def test_no_invoice_is_posted_until_the_nights_are_re_run(warehouse, settings, monkeypatch, posting):
    """Posting is where a wrong amount becomes permanent: the run fails the contract (the others
    are billed) and a reviewer's post is refused, naming the nights; once they are re-run the
    invoice bills the new service at the units the nights counted."""
    monkeypatch.setenv("AGENT_BILLING_RAW_PATH", str(settings.raw_path))
    contract = with_reference(deepcopy(CONTRACT))
    the_contract(contract)["posting"] = posting
    run_contracts(warehouse, contract)
    sync(warehouse, settings, (D1, D2, D3))
    run_contracts(warehouse, ws_twin_from(D1)(contract))

    summary = run_billing(warehouse, D3)
    refusal = (f"cannot post INV-C-CONTOSO-2024-03: a contracts change made services active on synced nights "
               f"that did not count them (service S-WS2 on {D1} to {D3}); re-run those nights")
    refusal_line = (refusal + " (agent-billing sync --date D for each, or an Airflow backfill of vsa_asset_sync; "
                    "docs/runbook.md, 'Fix a wrong contract'), or accept the nights whose landing is gone, damaged or "
                    "without the service's view (agent-billing snapshots accept-uncounted D [--through D2] --service S), "
                    "then bill again")
    if posting == "automatic":
        [failed] = summary.failed
        assert failed.contract_id == "C-CONTOSO" and not failed.transient
        assert failed.error.startswith(f"NightsNotCounted: {refusal}"), failed.error
        assert [c.contract_id for c in summary.contracts] == ["C-REF"]  # the other contract billed
    else:
        assert not summary.failed
        assert held_by_uncounted_nights(warehouse, pending_lines(warehouse)) == [
            f"contract C-CONTOSO cannot be posted until these nights are re-run, or accepted where no re-run can count "
            f"them: service S-WS2 on {D1} to {D3} "
            "(docs/runbook.md, 'Fix a wrong contract')"]
        review = cli("review")
        assert review.returncode == 0 and held_by_uncounted_nights(warehouse, pending_lines(warehouse))[0] in review.stdout
        post = cli("post", "--contract", "C-CONTOSO")
        assert post.returncode == 2 and post.stderr.strip().splitlines() == [f"agent-billing post: error: {refusal_line}"], post.stderr
        with pytest.raises(NightsNotCounted, match=refusal.replace("(", r"\(").replace(")", r"\)")):
            post_reviewed(warehouse, "C-CONTOSO")
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM invoices WHERE contract_id = 'C-CONTOSO'")).scalar() == 0
    preview = cli("invoices", "preview", "--contract", "C-CONTOSO")  # the hold is told where the invoice is shown
    assert preview.returncode == 0, preview.stderr
    assert preview.stdout.splitlines()[1] == (
        f"contract C-CONTOSO cannot be posted until these nights are re-run, or accepted where no re-run can count "
            f"them: service S-WS2 on {D1} to {D3} "
        "(docs/runbook.md, 'Fix a wrong contract')")
    assert preview_invoice(warehouse, "C-CONTOSO")["held_until_recounted"] == {"S-WS2": [str(D1), str(D2), str(D3)]}

    sync(warehouse, settings, (D1, D2, D3))
    assert preview_invoice(warehouse, "C-CONTOSO")["held"] is None
    summary = run_billing(warehouse, D3)
    assert not summary.failed
    if posting == "review":
        post_reviewed(warehouse, "C-CONTOSO")
    with warehouse.connect() as conn:
        amounts = dict(conn.execute(text(
            "SELECT service_id, amount FROM invoice_lines WHERE service_id IN ('S-WS2', 'S-REF') AND kind = 'normal'")).all())
    assert amounts["S-WS2"] == amounts["S-REF"] > 0


@pytest.mark.parametrize("warehouse_url", ["sqlite", "postgresql"], indirect=True)
def test_a_new_contract_whose_services_were_all_uncounted_keeps_its_first_invoice(warehouse, settings, monkeypatch):
    """A contract added after its first nights were synced has no line yet on its invoice date
    (nothing counted its services). Its month is not closed without an invoice: the run fails
    the contract, naming the nights, and once they are re-run the month's invoice is posted."""
    monkeypatch.setenv("AGENT_BILLING_RAW_PATH", str(settings.raw_path))
    contract = with_reference(deepcopy(CONTRACT))
    run_contracts(warehouse, contract)
    sync(warehouse, settings, (D1, D2, D3))
    new = deepcopy(the_contract(contract))
    new.update(contract_id="C-NEW", start_date=D1.isoformat(), notify_emails=[],
               services=[{**service(contract, "S-WS"), "service_id": "S-NEW", "name": "New", "start_date": D1.isoformat()}])
    contract["accounts"][0]["contracts"].append(new)
    run_contracts(warehouse, contract)

    summary = run_billing(warehouse, D3)
    [failed] = summary.failed
    assert failed.contract_id == "C-NEW" and failed.error.startswith(
        f"NightsNotCounted: cannot post INV-C-NEW-2024-03: a contracts change made services active on synced "
        f"nights that did not count them (service S-NEW on {D1} to {D3})"), failed.error
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM billing_cycles WHERE contract_id = 'C-NEW'")).scalar() == 0

    sync(warehouse, settings, (D1, D2, D3))
    summary = run_billing(warehouse, D3)
    assert not summary.failed
    with warehouse.connect() as conn:
        [(invoice, amount)] = conn.execute(text(
            "SELECT invoice_id, amount FROM invoice_lines WHERE service_id = 'S-NEW' AND kind = 'normal'")).all()
        reference = conn.execute(text(
            "SELECT amount FROM invoice_lines WHERE service_id = 'S-REF' AND kind = 'normal' AND period_start = :d"),
            {"d": D1}).scalar_one()
    assert invoice == "INV-C-NEW-2024-03" and amount == reference > 0


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_change_undone_and_a_scope_that_points_at_nothing_hold_nothing(warehouse, settings, monkeypatch):
    """A change undone leaves no night to recount; a night re-run on which the service's scope
    points at nothing is counted as well as it can be (no count: the scope report says why)."""
    monkeypatch.setenv("AGENT_BILLING_RAW_PATH", str(settings.raw_path))
    run_contracts(warehouse, CONTRACT)
    sync(warehouse, settings, (D1, D2, D3))
    run_contracts(warehouse, ws_from(D1)(ws_twin_from(D2)(deepcopy(CONTRACT))))
    assert to_recount(warehouse) == {("S-WS2", str(D2)), ("S-WS2", str(D3))}
    run_contracts(warehouse, ws_twin_from(D3)(deepcopy(CONTRACT)))  # its start moved to the last night
    assert to_recount(warehouse) == {("S-WS2", str(D3))}

    def and_nowhere(contract: dict) -> dict:  # a service whose machine group VSA does not have
        the_contract(contract)["services"].append(
            {**service(contract, "S-WS"), "service_id": "S-NOWHERE", "vsa_machine_group_id": "999",
             "start_date": D3.isoformat()})
        return contract
    run_contracts(warehouse, and_nowhere(ws_twin_from(D3)(deepcopy(CONTRACT))))
    assert to_recount(warehouse) == {("S-WS2", str(D3)), ("S-NOWHERE", str(D3))}
    sync(warehouse, settings, (D3,))
    assert to_recount(warehouse) == set() and counts(warehouse, "S-NOWHERE") == {}
    assert not run_billing(warehouse, D3).failed


@pytest.mark.parametrize("warehouse_url", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize("later", ["released after the apply", "diffed after the apply"])
def test_a_night_that_bills_only_after_the_apply_is_held_too(warehouse, settings, monkeypatch, later):
    """A night counted before the apply but not complete then (quarantined and released later,
    or counted and diffed later: a failed diff task cleared) bills without a new count: it is
    recorded as the complete nights are, and the remedy gives the service the reference's units."""
    monkeypatch.setenv("AGENT_BILLING_RAW_PATH", str(settings.raw_path))
    contract = with_reference(deepcopy(CONTRACT))
    run_contracts(warehouse, contract)
    sync(warehouse, settings, (D1,))
    if later == "released after the apply":  # the org loses most of its agents: D2 is quarantined
        write_landing(settings.raw_path, D2, *DAYS[D2], mutate=lambda r: r.update({"agents.jsonl.gz": r["agents.jsonl.gz"][:1]}))
        sync(warehouse, settings, (D2,))
    else:
        write_landing(settings.raw_path, D2, *DAYS[D2])
        load_step(warehouse, settings, D2)
        count_step(warehouse, settings, D2)
    sync(warehouse, settings, (D3,))

    [warning] = run_contracts(warehouse, ws_twin_from(D1)(contract)).uncounted
    assert f"3 synced night(s) that did not count it ({D1} to {D3})" in warning
    if later.startswith("released"):  # `sync --bill` bills what the nightly DAG bills: not this night,
        with pytest.raises(OperationFailed, match=f"snapshot {D2} is quarantined: not billed; decide on it"):
            _bill_the_night(warehouse, D2)  # and a replay stops at it for a person's decision
    (release_snapshot if later.startswith("released") else diff_step)(warehouse, settings, D2)
    assert "S-WS2" in str(run_billing(warehouse, D3).failed)

    sync(warehouse, settings, (D1, D2, D3))
    assert to_recount(warehouse) == set() and counts(warehouse, "S-WS2") == counts(warehouse, "S-REF")
    assert not run_billing(warehouse, D3).failed


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_service_pruned_from_the_file_keeps_only_the_nights_it_still_needs(warehouse, settings, monkeypatch):
    """``--prune`` ends what the file no longer has: the nights after its end need no count."""
    monkeypatch.setenv("AGENT_BILLING_RAW_PATH", str(settings.raw_path))
    run_contracts(warehouse, CONTRACT)
    sync(warehouse, settings, (D1, D2, D3))
    run_contracts(warehouse, ws_twin_from(D1)(deepcopy(CONTRACT)))
    assert {d for _, d in to_recount(warehouse)} == {str(D1), str(D2), str(D3)}
    run_contracts(warehouse, CONTRACT, prune_end_date=D1)
    assert to_recount(warehouse) == {("S-WS2", str(D1))}


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_night_whose_landing_is_gone_is_accepted_by_a_person_or_recorded_when_apply_cannot_see_the_landings(
        warehouse, settings, monkeypatch, tmp_path):
    """Apply on a machine without the raw folder cannot tell which nights a re-run can count: it
    records them all (the hold errs on the side of a correct invoice) and says so. A night that
    cannot be re-run is accepted by a person, and holds nothing any more; but not on a machine
    that cannot see the landings either, as a re-run may still count it."""
    run_contracts(warehouse, CONTRACT)
    sync(warehouse, settings, (D1, D2, D3))
    monkeypatch.setenv("AGENT_BILLING_RAW_PATH", str(tmp_path / "not-mounted"))
    [warning] = run_contracts(warehouse, ws_twin_from(D2)(deepcopy(CONTRACT))).uncounted
    assert "not-mounted is not on this machine, AGENT_BILLING_RAW_PATH: whether their landings are kept was not checked" \
        in warning and "cannot be recounted" not in warning
    assert to_recount(warehouse) == {("S-WS2", str(D2)), ("S-WS2", str(D3))}
    with pytest.raises(RawFolderMissing, match=(
            f"the raw landing folder {tmp_path / 'not-mounted'} does not exist, but the warehouse has nights "
            f"synced up to {D3}: is the raw volume mounted there.*; nothing was accepted$")):
        accept_uncounted(warehouse, "S-WS2", D2)
    assert to_recount(warehouse) == {("S-WS2", str(D2)), ("S-WS2", str(D3))}

    monkeypatch.setenv("AGENT_BILLING_RAW_PATH", str(settings.raw_path))  # where the landings are
    for night in (D2, D3):  # lost: no re-run can count them
        shutil.rmtree(settings.raw_path / str(night))
    accept_uncounted(warehouse, "S-WS2", D2)
    with pytest.raises(UserError, match=f"service S-WS2 has no night {D2} to recount: its nights to recount are {D3}"):
        accept_uncounted(warehouse, "S-WS2", D2)
    [failed] = run_billing(warehouse, D3).failed
    assert f"(service S-WS2 on {D3});" in failed.error and "accept-uncounted" in failed.error
    accept_uncounted(warehouse, "S-WS2", D3)
    assert not run_billing(warehouse, D3).failed


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_range_accepts_the_nights_no_re_run_can_count_and_names_the_others(warehouse, settings, monkeypatch,
                                                                            tmp_path):
    """Recorded D1 to D3 where apply could not see the landings; D2's landing is lost since.
    `accept-uncounted D1 --through D3` accepts D2 and leaves D1 and D3, which a re-run counts,
    named in its output (the range was refused whole, so the command apply printed failed)."""
    run_contracts(warehouse, CONTRACT)
    sync(warehouse, settings, (D1, D2, D3))
    monkeypatch.setenv("AGENT_BILLING_RAW_PATH", str(tmp_path / "not-mounted"))
    run_contracts(warehouse, ws_twin_from(D1)(deepcopy(CONTRACT)))
    assert to_recount(warehouse) == {("S-WS2", str(d)) for d in (D1, D2, D3)}
    monkeypatch.setenv("AGENT_BILLING_RAW_PATH", str(settings.raw_path))
    shutil.rmtree(settings.raw_path / str(D2))
    accepted = cli("snapshots", "accept-uncounted", str(D1), "--through", str(D3), "--service", "S-WS2")
    assert accepted.returncode == 0 and accepted.stdout == (
        f"service S-WS2: night {D2} accepted uncounted (their days bill at the units of another night); left to "
        f"re-run, their landings can count it: {D1}, {D3} (agent-billing sync --date D for each)\n"), accepted.stderr
    assert to_recount(warehouse) == {("S-WS2", str(D1)), ("S-WS2", str(D3))}
    with pytest.raises(UserError, match=f"the landings of {D1}, {D3} can count service S-WS2: re-run those nights"):
        accept_uncounted(warehouse, "S-WS2", D1, D3)


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_forecast_is_held_by_every_night_to_recount_up_to_its_invoice_date(warehouse, settings, monkeypatch):
    """A preview as of an earlier date than the nights synced since forecasts an invoice that
    its invoice date's run posts: every night to recount up to that date holds it, not only
    those up to the preview's date."""
    monkeypatch.setenv("AGENT_BILLING_RAW_PATH", str(settings.raw_path))
    contract = with_reference(deepcopy(CONTRACT))
    run_contracts(warehouse, contract)
    sync(warehouse, settings, (D1, D2, D3))
    assert not run_billing(warehouse, D1).failed  # March posted; April's invoice is due on 04-01
    run_contracts(warehouse, ws_twin_from(D1)(contract))
    for as_of in (D1, D3):
        preview = preview_invoice(warehouse, "C-CONTOSO", as_of)
        assert preview["forecast"] is not None and preview["invoice_date"] == date(2024, 4, 1)
        assert preview["held_until_recounted"] == {"S-WS2": [str(D1), str(D2), str(D3)]}, as_of
