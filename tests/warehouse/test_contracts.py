"""Contracts file: validation with precise messages, idempotent apply, locked derivation."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from agent_billing.contracts import ContractsFileError, apply_contracts, load_contracts_file

CONTRACTS = textwrap.dedent(
    """\
    accounts:
      - account_id: CONTOSO
        name: Contoso Ltd
        vsa_org_id: "73511820644390182275501461"
        contracts:
          - contract_id: C-CONTOSO
            currency: USD
            billing_day: 1
            posting: automatic
            start_date: 2024-03-01
            notify_emails: [billing@contoso.example]
            services:
              - service_id: S-CONTOSO-WS
                name: Managed workstation
                unit_price: 1.13
                units_source: rmm_agent_count
                vsa_machine_group_id: "73511820644390182275501462"
                include_subgroups: false
                vsa_view_id: null
                start_date: 2024-03-01
              - service_id: S-CONTOSO-SUP
                name: Support block
                unit_price: "99.00"
                units_source: manual
                units: 3
                start_date: 2024-03-01
    """
)


@pytest.fixture
def contracts_file(tmp_path):
    path = tmp_path / "contracts.yaml"
    path.write_text(CONTRACTS)
    return path


def test_apply_is_idempotent_and_keeps_ids_and_prices_exact(warehouse, contracts_file):
    first = apply_contracts(warehouse, contracts_file)
    assert first.created == {"accounts": 1, "contracts": 1, "services": 2}
    second = apply_contracts(warehouse, contracts_file)
    assert not second.changed
    with warehouse.connect() as conn:
        org = conn.execute(text("SELECT vsa_org_id FROM accounts")).scalar_one()
        price = conn.execute(
            text("SELECT unit_price FROM services WHERE service_id = 'S-CONTOSO-WS'")
        ).scalar_one()
        emails = conn.execute(text("SELECT notify_emails FROM contracts")).scalar_one()
    assert org == "73511820644390182275501461"
    assert Decimal(str(price)) == Decimal("1.13")
    assert emails == "billing@contoso.example"


def test_locked_service_edit_is_refused_and_nothing_changes(warehouse, contracts_file):
    apply_contracts(warehouse, contracts_file)
    edited = contracts_file.read_text().replace("include_subgroups: false", "include_subgroups: true")
    edited = edited.replace("name: Contoso Ltd", "name: Contoso Limited")
    contracts_file.write_text(edited)
    with pytest.raises(ContractsFileError, match=r"service S-CONTOSO-WS: include_subgroups cannot change"):
        apply_contracts(warehouse, contracts_file)
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT name FROM accounts")).scalar_one() == "Contoso Ltd"


def test_database_refuses_locked_edit_even_without_the_application(warehouse, contracts_file):
    apply_contracts(warehouse, contracts_file)
    with pytest.raises(DBAPIError, match="locked"), warehouse.begin() as conn:
        conn.execute(text("UPDATE services SET vsa_view_id = '55120913' WHERE service_id = 'S-CONTOSO-WS'"))
    with warehouse.begin() as conn:  # unlocked columns stay editable
        conn.execute(text("UPDATE services SET name = 'WS' WHERE service_id = 'S-CONTOSO-WS'"))


def test_manual_units_change_is_recorded_as_a_unit_change(warehouse, contracts_file):
    apply_contracts(warehouse, contracts_file)
    contracts_file.write_text(
        contracts_file.read_text().replace("units: 3", "units: 5\n            units_effective_date: 2024-04-10")
    )
    assert apply_contracts(warehouse, contracts_file).unit_changes == 1
    with warehouse.connect() as conn:
        row = conn.execute(text("SELECT * FROM unit_changes")).mappings().one()
    assert (row["units_before"], row["units_after"], row["delta"], row["source"]) == (3, 5, 2, "manual")


def test_validation_errors_name_entry_and_field(tmp_path):
    bad = CONTRACTS.replace('unit_price: "99.00"', 'unit_price: "-1"').replace("currency: USD", "currency: usd")
    path = tmp_path / "bad.yaml"
    path.write_text(bad)
    with pytest.raises(ContractsFileError) as info:
        load_contracts_file(path)
    message = str(info.value)
    assert "bad.yaml" in message
    assert "contracts[0] (C-CONTOSO) > currency" in message
    assert "services[1] (S-CONTOSO-SUP) > unit_price" in message


def test_unquoted_float_id_and_yaml_syntax_errors_are_clear(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(CONTRACTS.replace('vsa_org_id: "73511820644390182275501461"', "vsa_org_id: 7.3e+25"))
    with pytest.raises(ContractsFileError, match=r"c.yaml:4: accounts\[0\] \(CONTOSO\) > vsa_org_id: VSA ids must be quoted"):
        load_contracts_file(path)
    path.write_text("accounts:\n  - account_id: [unclosed\n")
    with pytest.raises(ContractsFileError, match=r"c.yaml:3: YAML syntax error at column"):
        load_contracts_file(path)


def test_cli_apply_reports_and_fails_cleanly(sqlite_warehouse_url, contracts_file, monkeypatch):
    env = {"AIRFLOW_CONN_BILLING_WAREHOUSE": sqlite_warehouse_url, "PATH": ""}
    cli = [sys.executable, "-m", "agent_billing.cli", "contracts", "apply"]
    ok = subprocess.run([*cli, str(contracts_file)], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "services: 2 created" in ok.stdout
    again = subprocess.run([*cli, str(contracts_file)], env=env, capture_output=True, text=True)
    assert "(no changes)" in again.stdout
    missing = subprocess.run([*cli, "/nonexistent.yaml"], env=env, capture_output=True, text=True)
    assert missing.returncode == 2
    assert "/nonexistent.yaml: file not found" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_a_price_typed_wrong_is_corrected_until_an_invoice_bills_it(warehouse, contracts_file):
    """1250 typed for 12.50 on a service just added: corrected before its first invoice, the
    invoice bills the right price; once an invoice billed it, a change would re-price it: refused."""
    from agent_billing.billing import run_billing

    contracts_file.write_text(contracts_file.read_text().replace('unit_price: "99.00"', 'unit_price: "9900"'))
    apply_contracts(warehouse, contracts_file)
    contracts_file.write_text(contracts_file.read_text().replace('unit_price: "9900"', 'unit_price: "99.00"'))
    assert apply_contracts(warehouse, contracts_file).updated["services"] == 1
    with warehouse.begin() as conn:  # the night of the first invoice date concluded
        conn.execute(text("INSERT INTO sync_runs (snapshot_date, status) VALUES ('2024-03-01', 'gap')"))
    run_billing(warehouse, date(2024, 3, 1))
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT amount FROM invoice_lines WHERE service_id = 'S-CONTOSO-SUP'")).scalar() \
            == Decimal("297")
    contracts_file.write_text(contracts_file.read_text().replace('unit_price: "99.00"', 'unit_price: "120.00"'))
    with pytest.raises(ContractsFileError, match=r"service S-CONTOSO-SUP: unit_price cannot change once an invoice "
                       r"bills the service \(99.00 → 120.00\)"):
        apply_contracts(warehouse, contracts_file)


def test_currency_is_fixed_once_the_contract_is_billed(warehouse, contracts_file):
    from agent_billing.billing import run_billing

    apply_contracts(warehouse, contracts_file)
    in_euro = contracts_file.read_text().replace("currency: USD", "currency: EUR")
    contracts_file.write_text(in_euro)
    apply_contracts(warehouse, contracts_file)  # nothing billed yet: a typo can be fixed
    with warehouse.begin() as conn:  # the nightly sync of the date concluded (billing horizon)
        conn.execute(text("INSERT INTO sync_runs (snapshot_date, status) VALUES ('2024-03-01', 'complete')"))
    run_billing(warehouse, date(2024, 3, 1))
    contracts_file.write_text(in_euro.replace("currency: EUR", "currency: GBP"))
    with pytest.raises(ContractsFileError, match=r"contract C-CONTOSO: currency cannot change \(EUR → GBP\)"):
        apply_contracts(warehouse, contracts_file)
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT currency FROM contracts")).scalar() == "EUR"


def test_the_org_behind_counted_services_is_locked(warehouse, contracts_file):
    """Re-pointing the account at another org would re-scope its counted services (and zero
    them the next night without any quarantine): refused by apply and by the database."""
    apply_contracts(warehouse, contracts_file)
    original = contracts_file.read_text()
    contracts_file.write_text(original.replace('vsa_org_id: "73511820644390182275501461"',
                                               'vsa_org_id: "73511820644390182275509999"'))
    with pytest.raises(ContractsFileError, match=r"account CONTOSO: vsa_org_id cannot change .* 1 service\(s\)"):
        apply_contracts(warehouse, contracts_file)
    with pytest.raises(DBAPIError, match="VSA org of an account with services counted in VSA"), \
            warehouse.begin() as conn:
        conn.execute(text("UPDATE accounts SET vsa_org_id = '1' WHERE account_id = 'CONTOSO'"))
    with warehouse.begin() as conn:
        conn.execute(text("INSERT INTO accounts (account_id, name, vsa_org_id) VALUES ('OTHER', 'Other', '2')"))
    with pytest.raises(DBAPIError, match="cannot move to another account"), warehouse.begin() as conn:
        conn.execute(text("UPDATE contracts SET account_id = 'OTHER' WHERE contract_id = 'C-CONTOSO'"))
    with warehouse.begin() as conn:  # names and other accounts stay editable
        conn.execute(text("UPDATE accounts SET name = 'Contoso Limited' WHERE account_id = 'CONTOSO'"))
        conn.execute(text("UPDATE accounts SET vsa_org_id = '3' WHERE account_id = 'OTHER'"))
        assert conn.execute(text("SELECT vsa_org_id FROM accounts WHERE account_id = 'CONTOSO'")).scalar() == (
            "73511820644390182275501461")


def test_a_units_edit_dated_before_a_later_one_is_refused(warehouse, contracts_file):
    """Its units before would be taken from the later change (10 → 20 from the 20th, then 12
    'from the 6th' made 20 → 12 and re-priced every month before at 20): refused in one line."""
    apply_contracts(warehouse, contracts_file)
    original = contracts_file.read_text()

    def units(n: int, effective: str) -> None:
        contracts_file.write_text(original.replace("units: 3", f"units: {n}\n            units_effective_date: {effective}"))

    units(5, "2024-04-20")
    assert apply_contracts(warehouse, contracts_file).unit_changes == 1
    units(4, "2024-04-06")
    with pytest.raises(ContractsFileError, match=r"service S-CONTOSO-SUP: units_effective_date 2024-04-06 is before "
                       r"the units change already recorded for 2024-04-20 \(3 → 5\): .*use 2024-04-20 or later"):
        apply_contracts(warehouse, contracts_file)
    units(4, "2024-04-20")  # the planned change itself may still be changed
    assert apply_contracts(warehouse, contracts_file).unit_changes == 1
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT units_before, units_after FROM unit_changes")).all() == [(3, 4)]


def test_the_plan_of_a_second_edit_the_same_day_says_what_apply_records(warehouse, contracts_file):
    """A second edit effective the same day replaces the first, from the day's starting units:
    the plan printed the service's units now (5 → 4) where 3 → 4 was recorded, and '5 → 3'
    with 'manual unit changes: 1' where the change was cancelled and nothing recorded."""
    from agent_billing.contracts import plan_contracts

    apply_contracts(warehouse, contracts_file)
    original = contracts_file.read_text()

    def units(n: int) -> list[str]:
        contracts_file.write_text(original.replace("units: 3", f"units: {n}\n            units_effective_date: 2024-04-20"))
        return [line.strip() for line in plan_contracts(warehouse, contracts_file).detail_lines(unchanged=False)
                if "unit change" in line]

    assert units(5) == ["unit change: 3 → 5 effective 2024-04-20"]
    apply_contracts(warehouse, contracts_file)
    assert units(4) == ["unit change: 3 → 4 effective 2024-04-20, replacing the change of 2024-04-20 "
                        "recorded earlier (3 → 5)"]
    assert apply_contracts(warehouse, contracts_file).unit_changes == 1
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT units_before, units_after FROM unit_changes")).all() == [(3, 4)]
    assert units(3) == ["unit change: the change of 2024-04-20 recorded earlier (3 → 4) cancelled, the units "
                        "are back to 3"]
    plan = apply_contracts(warehouse, contracts_file)
    assert (plan.unit_changes, plan.summary().endswith("manual unit changes: 0 (1 cancelled)")) == (0, True)
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT units_before, units_after FROM unit_changes")).all() == []


def test_a_billed_contract_keeps_its_account(warehouse, tmp_path):
    """Invoices name the contract's account: moving a billed contract would re-address them."""
    from agent_billing.billing import run_billing

    def accounts(owner: str) -> str:
        contract = textwrap.indent(textwrap.dedent("""\
            - contract_id: C-SUP
              currency: USD
              start_date: 2024-03-01
              services:
                - {service_id: S-SUP, name: Support, unit_price: "99.00", units_source: manual, units: 3,
                   start_date: 2024-03-01}
            """), "      ")
        return "".join(
            f"  - account_id: {a}\n    name: {a.title()}\n    contracts:" + ("\n" + contract if a == owner else " []\n")
            for a in ("CONTOSO", "FABRIKAM")
        )

    path = tmp_path / "two.yaml"
    path.write_text("accounts:\n" + accounts("CONTOSO"))
    apply_contracts(warehouse, path)
    path.write_text("accounts:\n" + accounts("FABRIKAM"))
    apply_contracts(warehouse, path)  # not billed yet: a mistake can be fixed
    path.write_text("accounts:\n" + accounts("CONTOSO"))
    apply_contracts(warehouse, path)
    with warehouse.begin() as conn:
        conn.execute(text("INSERT INTO sync_runs (snapshot_date, status) VALUES ('2024-03-01', 'complete')"))
    run_billing(warehouse, date(2024, 3, 1))
    path.write_text("accounts:\n" + accounts("FABRIKAM"))
    with pytest.raises(ContractsFileError, match=r"contract C-SUP: account_id cannot change \(CONTOSO → FABRIKAM\) "
                       r"once the contract has invoices"):
        apply_contracts(warehouse, path)


def invoice_months(warehouse, *days: date) -> None:
    """Bill as of each of ``days`` (each a night recorded as a gap: no count), as the nightly run
    would: the months whose invoice dates they are get their invoices."""
    from agent_billing.billing import run_billing

    for day in days:
        with warehouse.begin() as conn:
            conn.execute(text("INSERT INTO sync_runs (snapshot_date, status) VALUES (:d, 'gap')"), {"d": day})
        run_billing(warehouse, day)


def test_a_units_edit_effective_in_invoiced_months_is_told(warehouse, contracts_file):
    """A units_effective_date left in the file from an earlier edit puts the new units back in
    months already invoiced: the next invoice re-bills them. Applied (a late change can be
    agreed), but told, naming the months; an edit from today is not."""
    from agent_billing.contracts import plan_contracts

    apply_contracts(warehouse, contracts_file)
    invoice_months(warehouse, date(2024, 3, 1), date(2024, 4, 1))
    text_ = contracts_file.read_text()
    contracts_file.write_text(text_.replace("units: 3\n", "units: 5\n            units_effective_date: 2024-03-15\n"))
    plan = plan_contracts(warehouse, contracts_file)
    assert plan.backdated == [
        "service S-CONTOSO-SUP (line 21): units 3 → 5 take effect 2024-03-15, in months already invoiced "
        "(2024-03, 2024-04): the next invoice corrects them; for a change from today, give today's date as "
        "units_effective_date (or leave it out)"]
    contracts_file.write_text(text_.replace("units: 3\n", "units: 5\n"))
    assert plan_contracts(warehouse, contracts_file).backdated == []


def test_dates_that_bill_or_credit_invoiced_months_are_told(warehouse, contracts_file):
    """A service added, ended or moved into months already invoiced makes the next invoice bill or
    credit those days. Applied (a late change can be agreed), but told, naming the months, as a
    units edit is; dates from today on are not."""
    from agent_billing.contracts import plan_contracts

    apply_contracts(warehouse, contracts_file)
    invoice_months(warehouse, date(2024, 3, 1), date(2024, 4, 1))
    original = contracts_file.read_text()
    support = "units: 3\n            start_date: 2024-03-01\n"
    backup = textwrap.indent("- service_id: S-CONTOSO-BKP\n  name: Backup\n  unit_price: 2\n  units_source: manual\n"
                             "  units: 4\n  start_date: 2024-04-10\n", " " * 10)
    contracts_file.write_text(original.replace(support, support + "            end_date: 2024-03-20\n" + backup))
    plan = plan_contracts(warehouse, contracts_file)
    assert plan.backdated == [
        "service S-CONTOSO-SUP (line 21): end_date: (none) → 2024-03-20, in months already invoiced (2024-03, "
        "2024-04): the next invoice credits those days; for a change from today, give today's date",
        "service S-CONTOSO-BKP (line 28): starts 2024-04-10, in months already invoiced (2024-04): the next "
        "invoice bills those days; for a change from today, give today's date"], plan.backdated
    # from the month not invoiced yet: nothing to tell
    contracts_file.write_text(original.replace(support, support + "            end_date: 2024-05-20\n"))
    assert plan_contracts(warehouse, contracts_file).backdated == []

    # what the warning says is what the next invoice does
    contracts_file.write_text(original.replace(support, support + "            end_date: 2024-03-20\n"))
    apply_contracts(warehouse, contracts_file)
    invoice_months(warehouse, date(2024, 5, 1))
    with warehouse.connect() as conn:
        credited = conn.execute(text(
            "SELECT period_start, amount FROM invoice_lines WHERE invoice_id = 'INV-C-CONTOSO-2024-05' "
            "AND service_id = 'S-CONTOSO-SUP' ORDER BY period_start")).all()
    # March: 3 × 99.00 × 11/31 days after the 20th; April: the whole month
    assert [(str(d)[:10], round(Decimal(str(a)), 2)) for d, a in credited] == [
        ("2024-03-01", Decimal("-105.39")), ("2024-04-01", Decimal("-297.00"))]


def test_a_start_moved_before_the_first_invoice_is_not_called_invoiced(warehouse, contracts_file):
    """February was never invoiced: a contract moved to start in it gets February billed on its
    next invoice for the first time, which the apply says as such (not "already invoiced")."""
    from agent_billing.contracts import plan_contracts

    apply_contracts(warehouse, contracts_file)
    invoice_months(warehouse, date(2024, 4, 1))  # April's invoice bills March and April
    contracts_file.write_text(contracts_file.read_text().replace("start_date: 2024-03-01", "start_date: 2024-02-15"))
    assert plan_contracts(warehouse, contracts_file).backdated == [
        "contract C-CONTOSO (line 6): start_date: 2024-03-01 → 2024-02-15, in months before the contract's first "
        "invoiced month (2024-02): the next invoice bills those days of services S-CONTOSO-SUP, S-CONTOSO-WS; for a "
        "change from today, give today's date",
    ]


def test_a_start_moved_later_names_every_invoiced_month_it_credits(warehouse, contracts_file):
    """March and April were invoiced; a start moved to April 10th credits all of March too,
    though after the move the contract's months start in April."""
    from agent_billing.contracts import plan_contracts

    apply_contracts(warehouse, contracts_file)
    invoice_months(warehouse, date(2024, 4, 1))
    contracts_file.write_text(contracts_file.read_text().replace("start_date: 2024-03-01", "start_date: 2024-04-10"))
    assert plan_contracts(warehouse, contracts_file).backdated == [
        f"service {s} (line {line}): start_date: 2024-03-01 → 2024-04-10, in months already invoiced (2024-03, "
        "2024-04): the next invoice credits those days; for a change from today, give today's date"
        for s, line in (("S-CONTOSO-WS", 13), ("S-CONTOSO-SUP", 21))]


def test_a_move_into_both_kinds_of_month_names_each(warehouse, contracts_file):
    """A contract and its services moved to start in February (never invoiced), the contract to
    end on March 20th (invoiced): one line names both kinds of month, and whose days are billed
    and credited (the services' own moves bill nothing within the contract's dates before)."""
    from agent_billing.contracts import plan_contracts

    apply_contracts(warehouse, contracts_file)
    invoice_months(warehouse, date(2024, 4, 1))
    contracts_file.write_text(contracts_file.read_text().replace("start_date: 2024-03-01", "start_date: 2024-02-15")
                              .replace("        notify_emails", "        end_date: 2024-03-20\n        notify_emails"))
    assert plan_contracts(warehouse, contracts_file).backdated == [
        "contract C-CONTOSO (line 6): start_date: 2024-03-01 → 2024-02-15, end_date: (none) → 2024-03-20, in months "
        "already invoiced (2024-03, 2024-04) and months before the contract's first invoiced month (2024-02): the "
        "next invoice bills those days of services S-CONTOSO-SUP, S-CONTOSO-WS and credits those days of services "
        "S-CONTOSO-SUP, S-CONTOSO-WS; for a change from today, give today's date"]


def test_months_a_first_invoice_billed_and_a_cancelled_units_change_are_told(warehouse, contracts_file):
    """A first invoice bills every month from the contract's start: those months are invoiced too.
    A units change taken back after an invoice billed it is corrected on the next one: told."""
    from agent_billing.contracts import plan_contracts

    apply_contracts(warehouse, contracts_file)
    invoice_months(warehouse, date(2024, 4, 1))  # no run on 03-01: April's invoice bills March too
    original = contracts_file.read_text()
    support = "units: 3\n            start_date: 2024-03-01\n"
    contracts_file.write_text(original.replace(support, "units: 3\n            start_date: 2024-03-15\n"))
    assert plan_contracts(warehouse, contracts_file).backdated == [
        "service S-CONTOSO-SUP (line 21): start_date: 2024-03-01 → 2024-03-15, in months already invoiced "
        "(2024-03): the next invoice credits those days; for a change from today, give today's date"]

    contracts_file.write_text(original.replace("units: 3\n", "units: 5\n            units_effective_date: 2024-03-20\n"))
    apply_contracts(warehouse, contracts_file)
    invoice_months(warehouse, date(2024, 5, 1))  # bills the change
    contracts_file.write_text(original.replace("units: 3\n", "units: 3\n            units_effective_date: 2024-03-20\n"))
    assert plan_contracts(warehouse, contracts_file).backdated == [
        "service S-CONTOSO-SUP (line 21): the change of 2024-03-20 recorded earlier (units 3 → 5) is cancelled, in "
        "months already invoiced (2024-03, 2024-04, 2024-05): the next invoice corrects them; for a change from "
        "today, give today's date as units_effective_date (or leave it out)"]


def test_dates_and_units_from_today_in_an_invoiced_month_are_not_told(warehouse, contracts_file):
    """The month of today is invoiced in advance: a service ended, added or re-counted from today
    is the everyday change, not one that reaches back into what the customer paid."""
    from agent_billing.contracts import plan_contracts
    from agent_billing.settings import get_settings

    today = datetime.now(get_settings().tz).date()
    this_month = today.replace(day=1)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    original = contracts_file.read_text().replace("2024-03-01", str(last_month))
    contracts_file.write_text(original)
    apply_contracts(warehouse, contracts_file)
    invoice_months(warehouse, last_month, this_month)
    support = f"units: 3\n            start_date: {last_month}\n"
    backup = textwrap.indent(f"- service_id: S-CONTOSO-BKP\n  name: Backup\n  unit_price: 2\n  units_source: manual\n"
                             f"  units: 4\n  start_date: {today}\n", " " * 10)
    contracts_file.write_text(original.replace(support, support + f"            end_date: {today}\n" + backup))
    assert plan_contracts(warehouse, contracts_file).backdated == []
    contracts_file.write_text(original.replace("units: 3\n", "units: 5\n"))  # effective today
    assert plan_contracts(warehouse, contracts_file).backdated == []
    # a day before today is in what the customer paid
    contracts_file.write_text(original.replace(support, support + f"            end_date: {last_month}\n"))
    assert plan_contracts(warehouse, contracts_file).backdated == [
        f"service S-CONTOSO-SUP (line 21): end_date: (none) → {last_month}, in months already invoiced "
        f"({last_month:%Y-%m}, {this_month:%Y-%m}): the next invoice credits those days; for a change from today, "
        "give today's date"] if today > this_month else [
        f"service S-CONTOSO-SUP (line 21): end_date: (none) → {last_month}, in months already invoiced "
        f"({last_month:%Y-%m}): the next invoice credits those days; for a change from today, give today's date"]


def test_a_service_s_dates_are_judged_within_its_contract_s(warehouse, contracts_file):
    """Billing counts a service's days within its contract's: moving a service's end past the
    contract's end changes no invoice, so nothing is told; moving the contract's end is."""
    from agent_billing.contracts import plan_contracts

    ending = contracts_file.read_text().replace("start_date: 2024-03-01\n        notify_emails",
                                                "start_date: 2024-03-01\n        end_date: 2024-04-15\n"
                                                "        notify_emails")
    assert "end_date: 2024-04-15" in ending
    contracts_file.write_text(ending)
    apply_contracts(warehouse, contracts_file)
    invoice_months(warehouse, date(2024, 3, 1), date(2024, 4, 1))
    support = "units: 3\n            start_date: 2024-03-01\n"
    contracts_file.write_text(ending.replace(support, support + "            end_date: 2024-04-25\n"))
    assert plan_contracts(warehouse, contracts_file).backdated == []
    contracts_file.write_text(ending.replace("end_date: 2024-04-15", "end_date: 2024-04-10"))
    assert plan_contracts(warehouse, contracts_file).backdated == [
        "contract C-CONTOSO (line 6): end_date: 2024-04-15 → 2024-04-10, in months already invoiced (2024-04): "
        "the next invoice credits those days of services S-CONTOSO-SUP, S-CONTOSO-WS; for a change from today, "
        "give today's date"]
    # A service the same edit ends before both of the contract's ends is told once, as its own
    # move: the contract's names only the services whose days it moves.
    contracts_file.write_text(ending.replace("end_date: 2024-04-15", "end_date: 2024-04-10").replace(
        support, support + "            end_date: 2024-04-05\n"))
    assert plan_contracts(warehouse, contracts_file).backdated == [
        "contract C-CONTOSO (line 6): end_date: 2024-04-15 → 2024-04-10, in months already invoiced (2024-04): "
        "the next invoice credits those days of service S-CONTOSO-WS; for a change from today, give today's date",
        "service S-CONTOSO-SUP (line 22): end_date: (none) → 2024-04-05, in months already invoiced (2024-04): "
        "the next invoice credits those days; for a change from today, give today's date"]


def test_a_contract_move_that_bills_some_services_and_credits_others_says_which(warehouse, contracts_file):
    """The contract starts later and ends later: the start credits days of both services, the
    end bills days of the one still running. The warning named all of them as billed and
    credited together; it says whose days each does."""
    from agent_billing.contracts import plan_contracts

    support = "units: 3\n            start_date: 2024-03-01\n"
    ending = contracts_file.read_text().replace(
        "start_date: 2024-03-01\n        notify_emails", "start_date: 2024-03-01\n        end_date: 2024-04-15\n"
        "        notify_emails").replace(support, support + "            end_date: 2024-04-05\n")
    contracts_file.write_text(ending)
    apply_contracts(warehouse, contracts_file)
    invoice_months(warehouse, date(2024, 3, 1), date(2024, 4, 1))
    contracts_file.write_text(ending.replace(
        "start_date: 2024-03-01\n        end_date: 2024-04-15", "start_date: 2024-03-05\n        end_date: 2024-04-20"))
    assert plan_contracts(warehouse, contracts_file).backdated == [
        "contract C-CONTOSO (line 6): start_date: 2024-03-01 → 2024-03-05, end_date: 2024-04-15 → 2024-04-20, in "
        "months already invoiced (2024-03, 2024-04): the next invoice bills those days of service S-CONTOSO-WS and "
        "credits those days of services S-CONTOSO-SUP, S-CONTOSO-WS; for a change from today, give today's date"]


def test_the_back_billing_warning_names_the_month_billing_starts(warehouse, contracts_file):
    """A service starting before its contract bills from the contract's start, as the warning says."""
    apply_contracts(warehouse, contracts_file)
    contracts_file.write_text(contracts_file.read_text().replace(
        "            vsa_view_id: null\n            start_date: 2024-03-01",
        "            vsa_view_id: null\n            start_date: 2024-03-01\n"
        "          - service_id: S-CONTOSO-BKP\n            name: Backup\n            unit_price: 2\n"
        "            units_source: rmm_agent_count\n            start_date: 2023-12-01"))
    [warning] = apply_contracts(warehouse, contracts_file).back_billing
    assert "service S-CONTOSO-BKP" in warning and "starts 2024-03-01," in warning and "every month from 2024-03" in warning


def test_services_starting_together_before_the_first_night_get_one_warning(warehouse):
    """A first contracts file for customers already under management lists dozens of services
    starting on one date: one warning names them (five, then how many more), not one each; a
    manual service is billed from its start at its own units, and said so apart."""
    from pathlib import Path

    with warehouse.begin() as conn:
        conn.execute(text("INSERT INTO sync_runs (snapshot_date, status) VALUES ('2024-06-01', 'complete')"))
    example = Path(__file__).resolve().parents[2] / "examples" / "contracts.yaml"
    assert apply_contracts(warehouse, example).back_billing == [
        "service S-CONTOSO-SUP (line 40) starts 2024-03-01, before the first night synced (2024-06): its first "
        "billing run bills every month from 2024-03 at its units in this file; for a customer billed elsewhere "
        "until now, give the date billing moves here (docs/contracts.md, start_date)",
        "services S-CONTOSO-WS (line 23), S-CONTOSO-SRV (line 33) start 2024-03-01, before the first night synced "
        "(2024-06): their first billing run bills every month from 2024-03 at the units of their first count; for a "
        "customer billed elsewhere until now, give the date billing moves here (docs/contracts.md, start_date)"]


def test_every_change_an_apply_makes_is_kept_with_its_file_and_line(warehouse, contracts_file, capsys):
    """Finance traces a credit to the apply that caused it: the services table holds only the
    file as last applied, ``contract_edits`` what each apply changed (a preview and a refused
    apply change nothing, so they record nothing)."""
    from agent_billing.cli import main
    from agent_billing.contracts import plan_contracts

    apply_contracts(warehouse, contracts_file)
    first = contracts_file.read_text()
    contracts_file.write_text(first.replace(
        "start_date: 2024-03-01\n          - service_id: S-CONTOSO-SUP",
        "start_date: 2024-03-01\n            end_date: 2024-04-10\n          - service_id: S-CONTOSO-SUP",
    ).replace("units: 3", "units: 5\n            units_effective_date: 2024-04-02"))
    plan_contracts(warehouse, contracts_file)  # a preview: nothing recorded
    apply_contracts(warehouse, contracts_file)
    contracts_file.write_text(contracts_file.read_text().replace("include_subgroups: false", "include_subgroups: true"))
    with pytest.raises(ContractsFileError):
        apply_contracts(warehouse, contracts_file)  # refused: nothing recorded
    with warehouse.connect() as conn:
        rows = conn.execute(text(
            "SELECT kind, entity_id, action, field, old_value, new_value, effective_date, line, source, applied_at "
            "FROM contract_edits ORDER BY edit_id")).all()
    created: dict[tuple[str, str], dict] = {}  # the terms each entry was created with, a row each
    for r in rows:
        if r.action == "create":
            assert r.old_value is None and r.effective_date is None
            created.setdefault((r.kind, r.entity_id), {})[r.field] = r.new_value
    assert list(created) == [("account", "CONTOSO"), ("contract", "C-CONTOSO"),
                             ("service", "S-CONTOSO-WS"), ("service", "S-CONTOSO-SUP")]
    assert created["account", "CONTOSO"] == {"name": "Contoso Ltd", "vsa_org_id": "73511820644390182275501461"}
    assert {k: created["service", "S-CONTOSO-SUP"][k] for k in ("unit_price", "units", "start_date", "contract_id")} \
        == {"unit_price": "99.00", "units": "3", "start_date": "2024-03-01", "contract_id": "C-CONTOSO"}
    assert "end_date" not in created["service", "S-CONTOSO-SUP"]  # a field left empty has no row
    assert created["service", "S-CONTOSO-WS"]["unit_price"] == "1.13"
    assert [(*r[:6], r[6] and str(r[6])) for r in rows if r.action != "create"] == [
        ("service", "S-CONTOSO-WS", "update", "end_date", None, "2024-04-10", None),
        ("service", "S-CONTOSO-SUP", "update", "units", "3", "5", "2024-04-02"),
    ]
    lines = {r.entity_id: r.line for r in rows if r.action == "update"}
    text_lines = contracts_file.read_text().splitlines()
    assert text_lines[lines["S-CONTOSO-WS"] - 1].strip() == "- service_id: S-CONTOSO-WS"
    assert {r.source for r in rows} == {str(contracts_file)}
    assert len({r.applied_at for r in rows[:-2]}) == len({r.applied_at for r in rows[-2:]}) == 1  # one time per apply

    assert main(["contracts", "history", "C-CONTOSO"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 5  # the contract's own edits and its services', not the account's
    assert out[-1].endswith("service S-CONTOSO-SUP  units: 3 → 5 from 2024-04-02")
    assert out[2].endswith(  # a created service with its terms, on one line
        "service S-CONTOSO-SUP  created: name Support block, unit_price 99.00, units_source manual, "
        "include_subgroups true, exclude_never_checked_in false, units 3, start_date 2024-03-01, contract_id C-CONTOSO")
    assert out[3].endswith(f"{contracts_file}:{lines['S-CONTOSO-WS']}  service S-CONTOSO-WS  end_date: (none) → 2024-04-10")
    assert main(["contracts", "history", "S-NOPE"]) == 2
    assert capsys.readouterr().err.strip() == (
        "agent-billing contracts history: error: no account, contract or service 'S-NOPE' in the "
        "warehouse (ids are case-sensitive)")


def test_a_field_left_empty_is_not_recorded_as_a_term(warehouse, contracts_file):
    """A contract without notify_emails is stored with an empty text: its creation records no
    notify_emails term (one that says "" would read as a value someone gave)."""
    contracts_file.write_text(contracts_file.read_text().replace("        notify_emails: [billing@contoso.example]\n", ""))
    apply_contracts(warehouse, contracts_file)
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT notify_emails FROM contracts")).scalar_one() == ""
        fields = conn.execute(text("SELECT field FROM contract_edits WHERE entity_id = 'C-CONTOSO'")).scalars().all()
    assert "notify_emails" not in fields and "currency" in fields


@pytest.mark.parametrize("statement", [
    "UPDATE contract_edits SET source = 'another.yaml'",
    "DELETE FROM contract_edits",
])
def test_the_database_refuses_to_edit_or_delete_the_history_of_edits(warehouse, contracts_file, statement):
    """The edit that caused a credit is evidence in a dispute, as the posted invoice is: a
    hand-written statement cannot rewrite it (migration 0023)."""
    apply_contracts(warehouse, contracts_file)
    with warehouse.connect() as conn:
        before = conn.execute(text("SELECT * FROM contract_edits ORDER BY edit_id")).all()
    assert before
    with pytest.raises(DBAPIError, match="rows are only added, never edited or deleted"):
        with warehouse.begin() as conn:
            conn.execute(text(statement))
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT * FROM contract_edits ORDER BY edit_id")).all() == before
