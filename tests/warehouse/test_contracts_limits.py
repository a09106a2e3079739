"""Limits defined once: ISO 4217 minor units in one table (billing and validation), and the
contracts file's lengths and ranges enforced by the database too (migration 0007)."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from agent_billing.billing.money import line_amount, minor_units
from agent_billing.contracts import ContractsFileError, parse_contracts
from agent_billing.contracts.limits import ID_MAX_LENGTH, NAME_MAX_LENGTH
from agent_billing.currencies import MINOR_UNITS, is_active_currency


def test_minor_units_follow_iso_4217_for_every_active_currency():
    zero = "JPY KRW PYG UGX VND CLP ISK XAF XOF XPF".split()
    three = "BHD KWD TND JOD OMR LYD IQD".split()
    four = "CLF UYW".split()
    assert {c: minor_units(c) for c in zero} == dict.fromkeys(zero, 0)
    assert {c: minor_units(c) for c in three} == dict.fromkeys(three, 3)
    assert {c: minor_units(c) for c in four} == dict.fromkeys(four, 4)
    assert (minor_units("USD"), minor_units("EUR"), minor_units("CHF"), minor_units("jpy")) == (2, 2, 2, 0)
    assert len(MINOR_UNITS) > 150 and set(MINOR_UNITS.values()) == {0, 2, 3, 4}
    assert not any(is_active_currency(c) for c in ("XAU", "XDR", "HRK", "usd", "US", "ABC"))
    # billing rounds once, half-up, to the table's minor unit
    assert line_amount(1, Decimal("0.4999"), 1, 1, "PYG") == Decimal("0")
    assert line_amount(1, Decimal("100.0005"), 1, 1, "KWD") == Decimal("100.001")
    assert line_amount(2, Decimal("0.0001"), 1, 1, "CLF") == Decimal("0.0002")
    assert line_amount(2, Decimal("0.0001"), 1, 1, "USD") == Decimal("0.00")


@pytest.mark.parametrize("code, accepted", [("PYG", True), ("CLF", True), ("UYW", True), ("XAU", False),
                                            ("HRK", False), ("ZZZ", False)])
def test_the_currency_validator_uses_the_same_table(code, accepted):
    document = {"accounts": [{"account_id": "A", "name": "A", "contracts": [
        {"contract_id": "C", "currency": code, "start_date": "2024-01-01"}]}]}
    if accepted:
        assert parse_contracts(document).accounts[0].contracts[0].currency == code
    else:
        with pytest.raises(ContractsFileError, match=f"'{code}' is not an active ISO 4217 currency code"):
            parse_contracts(document)


def test_the_database_enforces_the_same_limits(warehouse):
    def refused(sql: str, **params) -> None:
        with pytest.raises(DBAPIError), warehouse.begin() as conn:
            conn.execute(sa.text(sql), params)

    with warehouse.begin() as conn:
        conn.execute(sa.text("INSERT INTO accounts (account_id, name) VALUES (:a, :n)"),
                     {"a": "A" * ID_MAX_LENGTH, "n": "N" * NAME_MAX_LENGTH})
        conn.execute(sa.text("INSERT INTO contracts (contract_id, account_id, currency, start_date) "
                             "VALUES ('C', :a, 'USD', '2024-01-01')"), {"a": "A" * ID_MAX_LENGTH})
        conn.execute(sa.text("INSERT INTO services (service_id, contract_id, name, unit_price, units_source, "
                             "start_date) VALUES ('S', 'C', 'S', 999999999.9999, 'manual', '2024-01-01')"))
    refused("INSERT INTO accounts (account_id, name) VALUES (:a, 'x')", a="B" * (ID_MAX_LENGTH + 1))
    refused("UPDATE accounts SET name = :n", n="N" * (NAME_MAX_LENGTH + 1))
    refused("UPDATE services SET unit_price = 1000000000")
    refused("UPDATE services SET unit_price = -0.0001")
    refused("UPDATE contracts SET end_date = '2023-12-31'")
    refused("UPDATE services SET end_date = '2023-12-31'")
    with warehouse.begin() as conn:  # within the limits stays writable
        conn.execute(sa.text("UPDATE services SET end_date = '2024-01-01', unit_price = 0"))
