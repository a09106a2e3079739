"""Limits of the contracts file, defined once: validation (schema.py) and the database
constraints (migration 0007) both read them."""

from __future__ import annotations

from decimal import Decimal

from agent_billing.billing.money import PRICE_DECIMALS
from agent_billing.vsa.records import VSA_ID_MAX_DIGITS  # noqa: F401 - the contracts file's VSA ids

ID_MAX_LENGTH = 64
"""account_id, contract_id, service_id."""
NAME_MAX_LENGTH = 200
"""Account and service names."""
UNIT_PRICE_MAX = Decimal("999999999.9999")
UNIT_PRICE_DECIMALS = PRICE_DECIMALS
NOTIFY_EMAILS_MAX = 20
OFFLINE_DAYS_MAX = 36_500
"""exclude_offline_days: a hundred years (validation only: beyond it no agent is left out, and
PostgreSQL's INTEGER column refused the value with no file, line or field)."""

TEXT_LIMITS: dict[tuple[str, str], int] = {
    ("accounts", "account_id"): ID_MAX_LENGTH,
    ("accounts", "name"): NAME_MAX_LENGTH,
    ("contracts", "contract_id"): ID_MAX_LENGTH,
    ("services", "service_id"): ID_MAX_LENGTH,
    ("services", "name"): NAME_MAX_LENGTH,
}
"""(table, column) → maximum length in characters, enforced by CHECK constraints."""
