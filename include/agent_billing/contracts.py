"""``agent-billing contracts apply FILE``: declarative accounts, contracts and services (SPEC §9).

The file is validated whole before anything is written (errors name the entry and field),
applied in one transaction, and idempotent: applying the same file twice changes nothing.
A service's ``units_source`` and unit scope are locked once saved (SPEC §4.2); the database
enforces the same rule with a trigger, so it cannot be bypassed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy import Connection, Engine, text

from agent_billing.errors import UserError
from agent_billing.settings import get_settings

log = logging.getLogger(__name__)

LOCKED_FIELDS = (
    "units_source",
    "vsa_machine_group_id",
    "include_subgroups",
    "vsa_view_id",
    "exclude_never_checked_in",
    "exclude_offline_days",
)


class ContractsFileError(UserError):
    """The contracts file is invalid or would change something locked; nothing was written."""


def _exact_id(value: Any) -> Any:
    """VSA ids are decimal strings; an unquoted YAML integer is exact, a float is not."""
    if isinstance(value, bool) or isinstance(value, float | Decimal):
        raise ValueError("VSA ids must be quoted strings of digits (a number loses digits)")
    if isinstance(value, int):
        return str(value)
    return value


def _exact_price(value: Any) -> Any:
    if isinstance(value, float):  # only reachable when called without the Decimal YAML loader
        raise ValueError("unit_price must be a string or an exact decimal, not a binary float")
    return value


VsaId = Annotated[str, BeforeValidator(_exact_id), Field(pattern=r"^\d{1,26}$")]
Price = Annotated[Decimal, BeforeValidator(_exact_price), Field(ge=0, decimal_places=4)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ServiceSpec(_Strict):
    service_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    unit_price: Price
    units_source: Literal["manual", "rmm_agent_count"]
    vsa_machine_group_id: VsaId | None = None
    include_subgroups: bool = True
    vsa_view_id: VsaId | None = None
    exclude_never_checked_in: bool = False
    exclude_offline_days: int | None = Field(None, ge=1)
    units: int | None = Field(None, ge=0)
    units_effective_date: date | None = None
    start_date: date
    end_date: date | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ServiceSpec:
        if self.end_date and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        if self.units_source == "manual":
            if self.units is None:
                raise ValueError("a manual service needs 'units'")
            scope = [f for f in ("vsa_machine_group_id", "vsa_view_id") if getattr(self, f)]
            if scope:
                raise ValueError(f"a manual service has no unit scope; remove {', '.join(scope)}")
        elif self.units is not None:
            raise ValueError("'units' of an rmm_agent_count service come from VSA; remove it")
        return self


class ContractSpec(_Strict):
    contract_id: str = Field(min_length=1)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    billing_day: int = Field(1, ge=1, le=28)
    posting: Literal["automatic", "review"] = "automatic"
    start_date: date
    end_date: date | None = None
    notify_emails: list[EmailStr] = []
    services: list[ServiceSpec] = []


class AccountSpec(_Strict):
    account_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    vsa_org_id: VsaId | None = None
    contracts: list[ContractSpec] = []

    @model_validator(mode="after")
    def _rmm_needs_org(self) -> AccountSpec:
        for contract in self.contracts:
            for service in contract.services:
                if service.units_source == "rmm_agent_count" and not self.vsa_org_id:
                    raise ValueError(
                        f"service {service.service_id} counts RMM agents but the account has no vsa_org_id"
                    )
        return self


class ContractsFile(_Strict):
    accounts: list[AccountSpec]

    @field_validator("accounts")
    @classmethod
    def _unique_ids(cls, accounts: list[AccountSpec]) -> list[AccountSpec]:
        for kind, ids in (
            ("account_id", [a.account_id for a in accounts]),
            ("contract_id", [c.contract_id for a in accounts for c in a.contracts]),
            ("service_id", [s.service_id for a in accounts for c in a.contracts for s in c.services]),
        ):
            dupes = sorted({i for i in ids if ids.count(i) > 1})
            if dupes:
                raise ValueError(f"duplicate {kind}: {', '.join(dupes)}")
        return accounts


class _DecimalLoader(yaml.SafeLoader):
    """YAML loader that reads floats as exact ``Decimal`` (``unit_price: 1.13`` stays 1.13)."""


_DecimalLoader.add_constructor(
    "tag:yaml.org,2002:float", lambda loader, node: Decimal(loader.construct_scalar(node))
)


def load_contracts_file(path: str | Path) -> ContractsFile:
    """Parse and validate a contracts YAML file; errors name the file, line, entry and field."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_DecimalLoader)  # noqa: S506
    except FileNotFoundError:
        raise ContractsFileError(f"{path}: file not found") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ContractsFileError(f"{path}: YAML error at {where}: {exc.problem}") from None
    return parse_contracts(raw, source=str(path))


def parse_contracts(raw: Any, source: str = "contracts") -> ContractsFile:
    if not isinstance(raw, Mapping):
        raise ContractsFileError(f"{source}: expected a mapping with an 'accounts' list")
    try:
        return ContractsFile.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{_describe(raw, err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ContractsFileError(f"{source}: invalid contracts file:\n  " + "\n  ".join(problems)) from None


def _describe(raw: Any, loc: tuple) -> str:
    """Turn a pydantic error location into ``accounts[0] (CONTOSO) > services[1] (S-X) > field``."""
    parts, node = [], raw
    for key in loc:
        if isinstance(key, int) and isinstance(node, list) and key < len(node):
            node = node[key]
            ident = next(
                (node.get(k) for k in ("service_id", "contract_id", "account_id") if isinstance(node, Mapping) and node.get(k)),
                None,
            )
            parts[-1] += f"[{key}]" + (f" ({ident})" if ident else "")
        else:
            parts.append(str(key))
            node = node.get(key) if isinstance(node, Mapping) else None
    return " > ".join(parts) or "file"


@dataclass
class ApplyReport:
    created: dict[str, int] = field(default_factory=lambda: {"accounts": 0, "contracts": 0, "services": 0})
    updated: dict[str, int] = field(default_factory=lambda: {"accounts": 0, "contracts": 0, "services": 0})
    unit_changes: int = 0

    @property
    def changed(self) -> bool:
        return any(self.created.values()) or any(self.updated.values()) or bool(self.unit_changes)

    def summary(self) -> str:
        parts = [
            f"{kind}: {self.created[kind]} created, {self.updated[kind]} updated"
            for kind in ("accounts", "contracts", "services")
        ]
        return "; ".join(parts) + f"; manual unit changes: {self.unit_changes}"


def apply_contracts(engine: Engine, document: ContractsFile | Mapping[str, Any] | str | Path) -> ApplyReport:
    """Apply a contracts document in one transaction; raise ``ContractsFileError`` on conflicts."""
    if isinstance(document, str | Path):
        spec = load_contracts_file(document)
    elif isinstance(document, ContractsFile):
        spec = document
    else:
        spec = parse_contracts(document)
    report = ApplyReport()
    with engine.begin() as conn:
        for account in spec.accounts:
            row = _account_row(account)
            current = _current(conn, "accounts", "account_id", row["account_id"])
            _check_scope_owner(conn, "accounts", "account_id", current, row, "vsa_org_id",
                               "add a new account for the new org")
            _upsert(conn, "accounts", "account_id", row, current, report)
            for contract in account.contracts:
                row = _contract_row(account, contract)
                current = _current(conn, "contracts", "contract_id", row["contract_id"])
                _check_currency(conn, current, row)
                _check_scope_owner(conn, "contracts", "contract_id", current, row, "account_id",
                                   "add a new contract under the other account")
                _upsert(conn, "contracts", "contract_id", row, current, report)
                for service in contract.services:
                    _apply_service(conn, contract, service, report)
    log.info("contracts applied: %s", report.summary())
    return report


def _account_row(a: AccountSpec) -> dict[str, Any]:
    return {"account_id": a.account_id, "name": a.name, "vsa_org_id": a.vsa_org_id}


def _contract_row(a: AccountSpec, c: ContractSpec) -> dict[str, Any]:
    return {
        "contract_id": c.contract_id,
        "account_id": a.account_id,
        "currency": c.currency,
        "billing_day": c.billing_day,
        "posting": c.posting,
        "notify_emails": ",".join(str(e) for e in c.notify_emails),
        "start_date": c.start_date,
        "end_date": c.end_date,
    }


def _service_row(c: ContractSpec, s: ServiceSpec) -> dict[str, Any]:
    row = s.model_dump(exclude={"units_effective_date"})
    row["contract_id"] = c.contract_id
    row["unit_price"] = s.unit_price.quantize(Decimal("0.0001"))
    if row["units"] is None:
        row.pop("units")
    return row


def _current(conn: Connection, table: str, key: str, value: str) -> dict[str, Any] | None:
    row = conn.execute(text(f"SELECT * FROM {table} WHERE {key} = :v"), {"v": value}).mappings().first()
    return dict(row) if row else None


def _normalise(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-":
        try:
            return date.fromisoformat(value)  # SQLite returns DATE columns as text
        except ValueError:
            return value
    if isinstance(value, float | int) and not isinstance(value, bool):
        return Decimal(str(value))
    if isinstance(value, Decimal):
        return value.normalize()
    return value


def _differs(current: Mapping[str, Any], row: Mapping[str, Any]) -> list[str]:
    return [k for k, v in row.items() if _normalise(current.get(k)) != _normalise(v)]


def _upsert(
    conn: Connection, table: str, key: str, row: dict[str, Any], current: Mapping[str, Any] | None,
    report: ApplyReport,
) -> None:
    """Insert ``row``, or update the columns that differ from ``current`` (the stored row)."""
    if current is None:
        cols = ", ".join(row)
        conn.execute(text(f"INSERT INTO {table} ({cols}) VALUES ({', '.join(':' + c for c in row)})"), row)
        report.created[table] += 1
        return
    changed = _differs(current, row)
    if changed:
        sets = ", ".join(f"{c} = :{c}" for c in changed)
        conn.execute(text(f"UPDATE {table} SET {sets} WHERE {key} = :{key}"), row)
        report.updated[table] += 1


def _check_scope_owner(
    conn: Connection, table: str, key: str, current: Mapping[str, Any] | None, row: Mapping[str, Any],
    column: str, remedy: str,
) -> None:
    """The account's VSA org scopes every counted service under it (SPEC 4.1): neither that
    org nor a contract's account may change once a service is counted in VSA (SPEC 4.2)."""
    if current is None or current[column] == row[column]:
        return
    counted = conn.execute(text(
        "SELECT COUNT(*) FROM services s JOIN contracts c ON c.contract_id = s.contract_id "
        f"WHERE c.{key} = :id AND s.units_source = 'rmm_agent_count'"), {"id": row[key]}).scalar()
    if counted:
        raise ContractsFileError(
            f"{table[:-1]} {row[key]}: {column} cannot change ({current[column]} → {row[column]}) while "
            f"{counted} service(s) under it are counted in VSA (locked derivation); {remedy}. "
            "Nothing was applied."
        )


def _check_currency(conn: Connection, current: Mapping[str, Any] | None, row: Mapping[str, Any]) -> None:
    """A billed contract keeps its currency: its posted amounts are in it."""
    if current is None or current["currency"] == row["currency"]:
        return
    billed = conn.execute(text(
        "SELECT EXISTS (SELECT 1 FROM invoices WHERE contract_id = :c) "
        "OR EXISTS (SELECT 1 FROM billing_pending WHERE contract_id = :c)"), {"c": row["contract_id"]}).scalar()
    if billed:
        raise ContractsFileError(
            f"contract {row['contract_id']}: currency cannot change ({current['currency']} → "
            f"{row['currency']}) once the contract has invoices or pending lines: they are amounts in "
            f"{current['currency']}. End this contract (end_date) and start a new one in "
            f"{row['currency']}. Nothing was applied."
        )


def _apply_service(conn: Connection, contract: ContractSpec, service: ServiceSpec, report: ApplyReport) -> None:
    row = _service_row(contract, service)
    current = _current(conn, "services", "service_id", service.service_id)
    if current is not None:
        if current["contract_id"] != contract.contract_id:
            raise ContractsFileError(
                f"service {service.service_id} belongs to contract {current['contract_id']}, "
                f"not {contract.contract_id}; a service cannot move between contracts"
            )
        locked = [f for f in LOCKED_FIELDS if _normalise(current[f]) != _normalise(row[f])]
        if locked:
            raise ContractsFileError(
                f"service {service.service_id}: {', '.join(locked)} cannot change once the service is "
                "saved (locked derivation); end this service (end_date) and add a new one. "
                "Nothing was applied."
            )
        if _normalise(current["unit_price"]) != _normalise(row["unit_price"]):
            raise ContractsFileError(
                f"service {service.service_id}: unit_price cannot change once the service is saved "
                f"({_normalise(current['unit_price']):f} → {_normalise(row['unit_price']):f}): it would "
                "re-price months already invoiced. End this service (end_date) and add a new one at "
                "the new price. Nothing was applied."
            )
        if service.units_source == "manual" and current["units"] != service.units:
            # recorded as a unit change so that billing prorates it like any other change
            _record_manual_change(conn, service, current["units"])
            report.unit_changes += 1
    _upsert(conn, "services", "service_id", row, current, report)


def _record_manual_change(conn: Connection, service: ServiceSpec, before: int) -> None:
    """A manual service's new units take effect on ``units_effective_date`` (default: today)."""
    effective = service.units_effective_date or datetime.now(get_settings().tz).date()
    params = {"service_id": service.service_id, "effective_date": effective, "source": "manual"}
    same_day = conn.execute(
        text(
            "SELECT units_before FROM unit_changes WHERE service_id = :service_id "
            "AND effective_date = :effective_date AND source = :source"
        ),
        params,
    ).scalar()
    if same_day is not None:  # a second edit on the same day replaces the first one
        before = same_day
        conn.execute(
            text(
                "DELETE FROM unit_changes WHERE service_id = :service_id "
                "AND effective_date = :effective_date AND source = :source"
            ),
            params,
        )
    if service.units == before:
        return
    conn.execute(
        text(
            "INSERT INTO unit_changes (change_id, service_id, effective_date, units_before, "
            "units_after, delta, source) VALUES (:change_id, :service_id, :effective_date, "
            ":before, :after, :delta, :source)"
        ),
        {
            **params,
            "change_id": f"{service.service_id}:{effective.isoformat()}:manual",
            "before": before,
            "after": service.units,
            "delta": service.units - before,
        },
    )
