"""Money: exact decimals, one half-up rounding per line to the currency's minor unit.

Amounts are computed with integers (unit prices scaled to 4 decimals), so no intermediate
result is ever rounded or represented in binary floating point.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache, lru_cache

from agent_billing.currencies import currency_minor_units

PRICE_DECIMALS = 4
_PRICE_SCALE = 10**PRICE_DECIMALS
#: The largest amount a money column holds (NUMERIC(18, 4), migration 0001): a line or an
#: invoice total beyond it is refused before it is written, naming the service.
AMOUNT_MAX = Decimal("99999999999999.9999")
#: On SQLite, 15 significant digits with the 4 decimals: SQLite stores a NUMERIC that is not a
#: whole number as a double, so 12,192,592,594,268.3654 came back as …268.37, its pending lines
#: never matched their recomputation and ``post`` refused them for good.
SQLITE_AMOUNT_MAX = Decimal("99999999999.9999")


def amount_max(dialect: str) -> Decimal:
    """The largest amount a line or an invoice total may come to on the warehouse's engine."""
    return SQLITE_AMOUNT_MAX if dialect == "sqlite" else AMOUNT_MAX


def amount_max_in_words(dialect: str) -> str:
    limit = f"{amount_max(dialect):,f}"
    return f"{limit} on SQLite, which keeps 15 significant digits; PostgreSQL holds more" if dialect == "sqlite" else limit


def minor_units(currency: str) -> int:
    """Decimals of ``currency`` from the ISO 4217 table (2 for a code the table does not know:
    the contracts file refuses such codes, so only rows written before that check reach it)."""
    return currency_minor_units(currency, default=2)


@cache
def price_units(unit_price: Decimal) -> int:
    """``unit_price`` as an integer number of 1/10 000; more than 4 decimals is an error."""
    return to_e4(unit_price, "unit price")


def to_e4(value: Decimal, what: str = "amount") -> int:
    """``value`` in exact integer ten-thousandths: the ``*_e4`` columns beside the NUMERIC ones
    (scale 4 holds every currency's minor unit), which SQL sums exactly on SQLite too."""
    scaled = value.scaleb(PRICE_DECIMALS)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{what} {value} has more than {PRICE_DECIMALS} decimals")
    return int(scaled)


def _div_half_up(numerator: int, denominator: int) -> int:
    """Integer division rounding half away from zero (Decimal's ROUND_HALF_UP)."""
    quotient, remainder = divmod(abs(numerator), denominator)
    if 2 * remainder >= denominator:
        quotient += 1
    return -quotient if numerator < 0 else quotient


@lru_cache(maxsize=1 << 16)
def line_amount(
    units: int, unit_price: Decimal, days: int, days_in_period: int, currency: str
) -> Decimal:
    """``units × unit_price × days / days_in_period``, rounded once, half-up.

    Memoised: a year of a contract's lines repeats a few thousand argument sets (the result
    depends on the price's value only, and Decimals are immutable)."""
    exponent = minor_units(currency)
    minor = _line_minor(units, price_units(unit_price), days, days_in_period, exponent)
    return Decimal(minor).scaleb(-exponent)


@lru_cache(maxsize=1 << 16)
def line_amount_e4(units: int, price_e4: int, days: int, days_in_period: int, exponent: int) -> int:
    """``line_amount`` in ten-thousandths (``to_e4`` of it), from integers only: the form the
    reconciliation compares with the posted ledger's ``amount_e4`` sums, line by line.
    ``price_e4`` is ``price_units(unit_price)``, ``exponent`` the currency's ``minor_units``.
    Memoised like ``line_amount``."""
    minor = _line_minor(units, price_e4, days, days_in_period, exponent)
    return minor * 10 ** (PRICE_DECIMALS - exponent)


def _line_minor(units: int, price_e4: int, days: int, days_in_period: int, exponent: int) -> int:
    """The line's amount in the currency's minor unit, rounded once, half-up."""
    return _div_half_up(units * price_e4 * days * 10**exponent, _PRICE_SCALE * days_in_period)


def quantize(amount: Decimal, currency: str) -> Decimal:
    """``amount`` with exactly the currency's decimals (for display and CSV)."""
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)))
