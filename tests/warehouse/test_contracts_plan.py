"""Contracts are declarative: the plan is what apply does (same validation, same locks),
absent entries are listed and ended with --prune, the example file is idempotent."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import text

from agent_billing.contracts import ContractsFileError, apply_contracts, plan_contracts

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "contracts.yaml"


def contents(engine) -> dict[str, list[str]]:
    """Every row of every table, to compare the warehouse before and after."""
    with engine.connect() as conn:
        return {
            table: sorted(repr(tuple(row)) for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')))
            for table in sorted(sa.inspect(conn).get_table_names())
        }


def edited(tmp_path: Path, *replacements: tuple[str, str], name: str = "contracts.yaml") -> Path:
    text = EXAMPLE.read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / name
    path.write_text(text)
    return path


def line_of(path: Path, needle: str) -> int:
    """1-based line of the first line of ``path`` containing ``needle``."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def entries(plan) -> dict[tuple[str, str], object]:
    return {(e.kind, e.key): e for e in plan.entries}


def test_example_file_applies_twice_and_its_plan_then_says_unchanged(warehouse):
    first = apply_contracts(warehouse, EXAMPLE)
    assert first.created == {"accounts": 2, "contracts": 2, "services": 4}
    after_first = contents(warehouse)
    second = apply_contracts(warehouse, EXAMPLE)
    assert not second.changed and second.unit_changes == 0
    assert contents(warehouse) == after_first
    plan = plan_contracts(warehouse, EXAMPLE)
    assert {e.action for e in plan.entries} == {"unchanged"}
    assert len(plan.entries) == 8
    with warehouse.connect() as conn:
        ws = conn.execute(sa.text("SELECT * FROM services WHERE service_id = 'S-CONTOSO-WS'")).mappings().one()
        org = conn.execute(sa.text("SELECT vsa_org_id FROM accounts WHERE account_id = 'CONTOSO'")).scalar()
    assert org == "73511820644390182275501461"
    assert ws["vsa_machine_group_id"] == "73511820644390182275501462"
    assert Decimal(str(ws["unit_price"])) == Decimal("12.50")
    assert ws["exclude_offline_days"] == 30


def test_plan_shows_each_field_old_to_new_writes_nothing_and_apply_does_the_same(warehouse, tmp_path):
    apply_contracts(warehouse, EXAMPLE)
    path = edited(
        tmp_path,
        ("name: Contoso Ltd", "name: Contoso Limited"),
        ("billing_day: 15", "billing_day: 20"),
        ("units: 3", "units: 5"),
        ("end_date: 2025-02-28", "end_date: 2025-03-31"),
        ("notify_emails: [billing@contoso.example, finance@contoso.example]",
         "notify_emails: [billing@contoso.example]"),
    )
    before = contents(warehouse)
    plan = plan_contracts(warehouse, path)
    assert contents(warehouse) == before
    by_key = entries(plan)
    assert [str(c) for c in by_key["account", "CONTOSO"].changes] == ["name: Contoso Ltd → Contoso Limited"]
    assert [str(c) for c in by_key["contract", "C-FABRIKAM"].changes] == ["billing_day: 15 → 20"]
    assert [str(c) for c in by_key["contract", "C-CONTOSO-2024"].changes] == [
        "notify_emails: billing@contoso.example,finance@contoso.example → billing@contoso.example"
    ]
    assert [str(c) for c in by_key["service", "S-CONTOSO-SRV"].changes] == ["end_date: 2025-02-28 → 2025-03-31"]
    sup = by_key["service", "S-CONTOSO-SUP"]
    assert [str(c) for c in sup.changes] == ["units: 3 → 5"]
    assert (sup.unit_change.before, sup.unit_change.after, sup.unit_change.effective_date) == (3, 5, date(2024, 4, 1))
    assert sup.line == line_of(path, "service_id: S-CONTOSO-SUP")
    assert by_key["service", "S-CONTOSO-WS"].action == "unchanged"
    assert f"~ update    service S-CONTOSO-SUP (line {sup.line})" in plan.detail_lines()

    applied = apply_contracts(warehouse, path)
    assert applied.updated == plan.updated == {"accounts": 1, "contracts": 2, "services": 2}
    assert applied.unit_changes == 1
    again = plan_contracts(warehouse, path)
    assert not again.changed
    with warehouse.connect() as conn:
        change = conn.execute(sa.text("SELECT units_before, units_after, source FROM unit_changes")).one()
        assert tuple(change) == (3, 5, "manual")
        assert conn.execute(sa.text("SELECT billing_day FROM contracts WHERE contract_id = 'C-FABRIKAM'")).scalar() == 20


LOCK_BASE = """\
accounts:
  - account_id: A1
    name: A one
    vsa_org_id: "100"
    contracts:
      - contract_id: C1
        currency: EUR
        start_date: 2024-03-01
        services:
          - {service_id: S-RMM, name: RMM, unit_price: "10", units_source: rmm_agent_count,
             vsa_machine_group_id: "200", start_date: 2024-03-01}
          - {service_id: S-MAN, name: Manual, unit_price: "5", units_source: manual, units: 2,
             start_date: 2024-03-01}
      - contract_id: C2
        currency: EUR
        start_date: 2024-03-01
        services:
          - {service_id: S-MOVE, name: Moving, unit_price: "1", units_source: manual, units: 1,
             start_date: 2024-03-01}
  - account_id: A2
    name: A two
    vsa_org_id: "300"
"""

LOCK_EDITED = """\
accounts:
  - account_id: A1
    name: A one
    vsa_org_id: "101"
    contracts:
      - contract_id: C2
        currency: EUR
        start_date: 2024-03-01
  - account_id: A2
    name: A two renamed
    vsa_org_id: "300"
    contracts:
      - contract_id: C1
        currency: USD
        start_date: 2024-03-01
        services:
          - {service_id: S-RMM, name: RMM, unit_price: "10", units_source: rmm_agent_count,
             vsa_machine_group_id: "200", include_subgroups: false, start_date: 2024-03-01}
          - {service_id: S-MAN, name: Manual, unit_price: "6", units_source: manual, units: 2,
             start_date: 2024-03-01}
          - {service_id: S-MOVE, name: Moving, unit_price: "1", units_source: manual, units: 1,
             start_date: 2024-03-01}
"""


def test_every_lock_is_a_refusal_in_the_plan_and_apply_refuses_the_whole_file(warehouse, tmp_path):
    from agent_billing.billing import run_billing

    base, edit = tmp_path / "base.yaml", tmp_path / "edited.yaml"
    base.write_text(LOCK_BASE)
    edit.write_text(LOCK_EDITED)
    apply_contracts(warehouse, base)
    conclude_sync(warehouse, date(2024, 4, 1))
    run_billing(warehouse, date(2024, 4, 1))
    before = contents(warehouse)

    plan = plan_contracts(warehouse, edit)
    assert contents(warehouse) == before
    refused = {(e.kind, e.key): e for e in plan.refused}
    assert set(refused) == {("account", "A1"), ("contract", "C1"), ("service", "S-RMM"),
                            ("service", "S-MAN"), ("service", "S-MOVE")}
    assert refused["account", "A1"].reason.startswith("vsa_org_id cannot change (100 → 101) while 1 service(s)")
    assert "currency cannot change (EUR → USD) once the contract has invoices" in refused["contract", "C1"].reason
    assert "account_id cannot change (A1 → A2) while 1 service(s)" in refused["contract", "C1"].reason
    assert refused["service", "S-RMM"].reason.startswith("include_subgroups cannot change once the service is saved")
    assert refused["service", "S-MAN"].reason.startswith("unit_price cannot change once an invoice bills the service (5.00 → 6.00)")
    assert refused["service", "S-MOVE"].reason.startswith("belongs to contract C2, not C1")
    assert refused["service", "S-MOVE"].line == line_of(edit, "service_id: S-MOVE")
    assert [str(c) for c in entries(plan)["account", "A2"].changes] == ["name: A two → A two renamed"]

    with pytest.raises(ContractsFileError) as info:
        apply_contracts(warehouse, edit)
    message = str(info.value)
    assert "\n" not in message and message.endswith("Nothing was applied.")
    assert f"edited.yaml:{line_of(edit, 'service_id: S-MAN')}: service S-MAN: unit_price cannot change" in message
    assert contents(warehouse) == before  # not even the allowed rename of A2


def test_locks_of_currency_and_account_are_refused_with_their_reason(warehouse, tmp_path):
    from agent_billing.billing import run_billing

    apply_contracts(warehouse, EXAMPLE)
    conclude_sync(warehouse, date(2024, 7, 1))
    run_billing(warehouse, date(2024, 7, 1))
    path = edited(tmp_path, ("currency: EUR", "currency: GBP"))
    plan = plan_contracts(warehouse, path)
    (refusal,) = plan.refused
    assert (refusal.kind, refusal.key, refusal.line) == ("contract", "C-FABRIKAM", line_of(path, "contract_id: C-FABRIKAM"))
    assert refusal.reason.startswith("currency cannot change (EUR → GBP) once the contract has invoices")

    # the contract with counted services moves to another account (declared in the file)
    text = EXAMPLE.read_text()
    text = text.replace(
        "    vsa_org_id: \"73511820644390182275501461\"      # the customer's VSA org (quoted digits, up to 26);\n"
        "                                                  # locked once a service below is counted in VSA\n"
        "    contracts:\n",
        "    vsa_org_id: \"73511820644390182275501461\"\n    contracts: []\n"
        "  - account_id: CONTOSO-NEW\n    name: Contoso new\n"
        "    vsa_org_id: \"73511820644390182275501461\"\n    contracts:\n",
    )
    path.write_text(text)
    plan = plan_contracts(warehouse, path)
    reasons = {(e.kind, e.key): e.reason for e in plan.refused}
    assert reasons == {("contract", "C-CONTOSO-2024"): reasons["contract", "C-CONTOSO-2024"]}
    assert "account_id cannot change (CONTOSO → CONTOSO-NEW) while 2 service(s)" in reasons["contract", "C-CONTOSO-2024"]


def test_absent_entries_are_listed_left_as_is_or_ended_with_prune(warehouse, tmp_path):
    apply_contracts(warehouse, EXAMPLE)
    text = EXAMPLE.read_text()
    without = text[: text.index("  - account_id: FABRIKAM")]
    without = without.replace(without[without.index("          - service_id: S-CONTOSO-SUP"):], "")
    path = tmp_path / "smaller.yaml"
    path.write_text(without)
    before = contents(warehouse)

    plan = apply_contracts(warehouse, path)
    absent = {(e.kind, e.key): e for e in plan.of("absent")}
    assert set(absent) == {("account", "FABRIKAM"), ("contract", "C-FABRIKAM"),
                           ("service", "S-FABRIKAM-BACKUP"), ("service", "S-CONTOSO-SUP")}
    assert all("left as is" in e.reason for e in absent.values())
    assert contents(warehouse) == before

    too_early = plan_contracts(warehouse, path, prune_end_date=date(2024, 5, 1))
    assert {(e.kind, e.key) for e in too_early.refused} == {("contract", "C-FABRIKAM"),
                                                            ("service", "S-FABRIKAM-BACKUP")}
    assert all("before its start_date 2024-06-15" in e.reason for e in too_early.refused)
    assert [str(c) for c in entries(too_early)["service", "S-CONTOSO-SUP"].changes] == [
        "end_date: (none) → 2024-05-01"]
    with pytest.raises(ContractsFileError, match="--end-date 2024-05-01 is before its start_date"):
        apply_contracts(warehouse, path, prune_end_date=date(2024, 5, 1))
    assert contents(warehouse) == before

    pruned = apply_contracts(warehouse, path, prune_end_date=date(2024, 12, 31))
    assert pruned.ended == {"accounts": 0, "contracts": 1, "services": 2}
    with warehouse.connect() as conn:
        ends = dict(conn.execute(sa.text("SELECT service_id, end_date FROM services")).all())
        contract_end = conn.execute(sa.text("SELECT end_date FROM contracts WHERE contract_id = 'C-FABRIKAM'")).scalar()
        accounts = conn.execute(sa.text("SELECT COUNT(*) FROM accounts")).scalar()
    assert str(ends["S-CONTOSO-SUP"])[:10] == str(ends["S-FABRIKAM-BACKUP"])[:10] == "2024-12-31"
    assert str(contract_end)[:10] == "2024-12-31" and ends["S-CONTOSO-WS"] is None
    assert accounts == 2  # never deleted
    # an entry already ended on or before the date is left alone: pruning again changes nothing
    assert not apply_contracts(warehouse, path, prune_end_date=date(2024, 12, 31)).changed


def conclude_sync(engine, day) -> None:
    """The nightly sync of ``day`` concluded: billing as of ``day`` is within its horizon."""
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO sync_runs (snapshot_date, status) VALUES (:d, 'gap')"), {"d": day})
