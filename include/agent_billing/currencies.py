"""ISO 4217: the active currency codes and their minor units, in one table.

Used by the contracts file (a currency must be an active code) and by billing (amounts are
rounded to the currency's minor unit). Source: ISO 4217 List One (codes in circulation);
codes without a minor unit (gold, SDR, testing codes, ...) are not billing currencies and are
left out, as are withdrawn codes (e.g. HRK 2023, SLL and ZWL 2024, ANG 2025).
"""

from __future__ import annotations

_BY_EXPONENT = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
    2: (
        "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP "
        "BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR "
        "FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR "
        "KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV "
        "MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR "
        "SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH "
        "USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG"
    ),
}

MINOR_UNITS: dict[str, int] = {
    code: exponent for exponent, codes in _BY_EXPONENT.items() for code in codes.split()
}
"""Active ISO 4217 code → number of decimals of its minor unit."""


def is_active_currency(code: str) -> bool:
    """True for an active ISO 4217 code written as ISO writes it (three capital letters)."""
    return code in MINOR_UNITS


def currency_minor_units(code: str, default: int | None = None) -> int:
    """Decimals of ``code`` (case-insensitive); ``default`` for an unknown code, else KeyError."""
    exponent = MINOR_UNITS.get(code.upper(), default)
    if exponent is None:
        raise KeyError(f"{code!r} is not an active ISO 4217 currency code")
    return exponent
