"""The plan of a contracts file: what ``apply`` would create, update, leave, end or refuse.

``compute_plan`` compares the file with the warehouse and applies every lock (SPEC 4.2, 9);
``apply.py`` executes a plan without refusals. ``--plan``/``--check`` print the same plan, so
what is previewed is what is applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import Connection, text

from agent_billing.contracts.schema import (
    LOCKED_FIELDS,
    AccountSpec,
    ContractsDocument,
    ContractSpec,
    ServiceSpec,
)
from agent_billing.settings import get_settings
from agent_billing.sync.changes.history import MANUAL, manual_change
from agent_billing.sync.changes.store import day_change
from agent_billing.sync.scopes import ScopeProblem
from agent_billing.warehouse.values import as_date, as_decimal

Kind = Literal["account", "contract", "service"]
Action = Literal["create", "update", "unchanged", "refuse", "absent", "end"]
KINDS: tuple[Kind, ...] = ("account", "contract", "service")
TABLES: dict[Kind, tuple[str, str]] = {
    "account": ("accounts", "account_id"),
    "contract": ("contracts", "contract_id"),
    "service": ("services", "service_id"),
}


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.field}: {show(self.old, self.field)} → {show(self.new, self.field)}"


@dataclass(frozen=True)
class ManualUnitChange:
    """A manual service's new units (``before`` → ``after``: the service's units now and in the
    file), recorded as a unit change effective ``effective_date``. ``recorded``: the change
    already recorded that day (before, after), which this edit replaces; ``records``: the
    change the edit leaves (before, after), None when it cancels ``recorded`` (the units are
    back where the day started): the rule of ``record_manual_change``, which apply runs."""

    before: int
    after: int
    effective_date: date
    recorded: tuple[int, int] | None = None
    records: tuple[int, int] | None = None

    def __str__(self) -> str:
        earlier = (f"the change of {self.effective_date} recorded earlier "
                   f"({self.recorded[0]} → {self.recorded[1]})" if self.recorded else "")
        if self.records is None:
            return f"unit change: {earlier} cancelled, the units are back to {self.after}"
        change = f"unit change: {self.records[0]} → {self.records[1]} effective {self.effective_date}"
        return f"{change}, replacing {earlier}" if earlier else change


@dataclass
class PlanEntry:
    kind: Kind
    key: str
    action: Action
    line: int | None = None
    row: dict[str, Any] = field(default_factory=dict)
    changes: list[FieldChange] = field(default_factory=list)
    reason: str = ""
    unit_change: ManualUnitChange | None = None

    def describe(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.kind} {self.key}{where}"


@dataclass
class Plan:
    source: str
    entries: list[PlanEntry] = field(default_factory=list)
    prune_end_date: date | None = None
    scope_snapshot: date | None = None
    scope_problems: list[ScopeProblem] = field(default_factory=list)
    scopes_checked: bool = False
    back_billing: list[str] = field(default_factory=list)  # services billed from before any night
    uncounted: list[str] = field(default_factory=list)  # counted services active on synced nights not counting them
    backdated: list[str] = field(default_factory=list)  # manual unit changes effective in invoiced periods

    def of(self, action: Action, kind: Kind | None = None) -> list[PlanEntry]:
        return [e for e in self.entries if e.action == action and (kind is None or e.kind == kind)]

    @property
    def refused(self) -> list[PlanEntry]:
        return self.of("refuse")

    @property
    def created(self) -> dict[str, int]:
        return {TABLES[k][0]: len(self.of("create", k)) for k in KINDS}

    @property
    def updated(self) -> dict[str, int]:
        return {TABLES[k][0]: len(self.of("update", k)) for k in KINDS}

    @property
    def ended(self) -> dict[str, int]:
        return {TABLES[k][0]: len(self.of("end", k)) for k in KINDS}

    @property
    def unit_changes(self) -> int:
        """Manual unit changes the plan records (a cancelled one records none)."""
        return sum(1 for e in self.entries if e.unit_change is not None and e.unit_change.records)

    @property
    def cancelled_unit_changes(self) -> int:
        return sum(1 for e in self.entries if e.unit_change is not None and not e.unit_change.records)

    @property
    def changed(self) -> bool:
        return any(e.action in ("create", "update", "end") for e in self.entries)

    def refusal_message(self) -> str:
        """One line: every refused entry with its reason."""
        return "; ".join(
            f"{self.source}{f':{e.line}' if e.line else ''}: {e.kind} {e.key}: {e.reason}"
            for e in self.refused
        ) + ". Nothing was applied."

    def summary(self) -> str:
        parts = []
        for kind in KINDS:
            table = TABLES[kind][0]
            counts = [
                f"{len(self.of('create', kind))} created",
                f"{len(self.of('update', kind))} updated",
                f"{len(self.of('unchanged', kind))} unchanged",
            ]
            for action, label in (("end", "ended"), ("absent", "absent from the file"),
                                  ("refuse", "refused")):
                if self.of(action, kind):
                    counts.append(f"{len(self.of(action, kind))} {label}")
            parts.append(f"{table}: {', '.join(counts)}")
        cancelled = f" ({self.cancelled_unit_changes} cancelled)" if self.cancelled_unit_changes else ""
        return "; ".join(parts) + f"; manual unit changes: {self.unit_changes}{cancelled}"

    def detail_lines(self, *, unchanged: bool = True) -> list[str]:
        """The plan entry by entry, field by field (``--plan``)."""
        lines = []
        for e in self.entries:
            if e.action == "unchanged" and not unchanged:
                continue
            lines.append(f"{_SIGN[e.action]} {_LABEL[e.action]:<9} {e.describe()}"
                         + (f": {e.reason}" if e.reason else ""))
            lines += [f"      {change}" for change in e.changes]
            if e.unit_change:
                lines.append(f"      {e.unit_change}")
        return lines


_SIGN = {"create": "+", "update": "~", "unchanged": "=", "refuse": "!", "absent": "?", "end": "-"}
_LABEL = {"create": "create", "update": "update", "unchanged": "unchanged", "refuse": "REFUSED",
          "absent": "absent", "end": "end"}


def show(value: Any, field: str | None = None) -> str:
    """A value as ``--plan`` shows it: none and an empty text visible."""
    if value is None:
        return "(none)"
    return '""' if value == "" else as_text(value, field)


def as_text(value: Any, field: str | None = None) -> str | None:
    """A value as text (``contract_edits`` stores it so): a unit price as money, with at least
    two decimals (12.50, 1.1325), other numbers as they are, dates ISO."""
    if value is None:
        return None
    if field == "unit_price":
        price = as_decimal(value)
        return f"{price.quantize(Decimal(1).scaleb(min(price.normalize().as_tuple().exponent, -2))):f}"
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- rows as stored ---------------------------------------------------------------------------


def account_row(a: AccountSpec) -> dict[str, Any]:
    return {"account_id": a.account_id, "name": a.name, "vsa_org_id": a.vsa_org_id}


def contract_row(a: AccountSpec, c: ContractSpec) -> dict[str, Any]:
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


def service_row(c: ContractSpec, s: ServiceSpec) -> dict[str, Any]:
    row = s.model_dump(exclude={"units_effective_date"})
    row["contract_id"] = c.contract_id
    row["unit_price"] = s.unit_price.quantize(Decimal(1).scaleb(-4))
    if row["units"] is None:  # counted in VSA: the column keeps its default
        row.pop("units")
    return row


def normalise(value: Any) -> Any:
    """Compare stored and file values alike on both engines (SQLite: text dates, REAL numbers)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-":
        try:
            return date.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, Decimal | float) or (isinstance(value, int) and not isinstance(value, bool)):
        return as_decimal(value).normalize()
    return value


def _changes(current: Mapping[str, Any], row: Mapping[str, Any]) -> list[FieldChange]:
    return [
        FieldChange(k, normalise(current.get(k)), normalise(v))
        for k, v in row.items()
        if normalise(current.get(k)) != normalise(v)
    ]


# --- the plan ---------------------------------------------------------------------------------


@dataclass
class _Stored:
    """The warehouse's accounts, contracts and services, each row read once."""

    rows: dict[Kind, dict[str, dict[str, Any]]]

    @classmethod
    def read(cls, conn: Connection) -> _Stored:
        rows: dict[Kind, dict[str, dict[str, Any]]] = {}
        for kind, (table, key) in TABLES.items():
            result = conn.execute(text(f"SELECT * FROM {table} ORDER BY {key}")).mappings()
            rows[kind] = {r[key]: dict(r) for r in result}
        return cls(rows)

    def counted_services(self, column: str, value: str) -> int:
        """Services counted in VSA under an account (``column='account_id'``) or a contract."""
        contracts = self.rows["contract"]
        return sum(
            1
            for s in self.rows["service"].values()
            if s["units_source"] == "rmm_agent_count"
            and (contracts[s["contract_id"]][column] if column == "account_id" else s["contract_id"]) == value
        )


def compute_plan(conn: Connection, document: ContractsDocument, *, prune_end_date: date | None = None) -> Plan:
    """Compare the file with the warehouse; every lock becomes a refused entry with a reason."""
    stored = _Stored.read(conn)
    plan = Plan(source=document.source, prune_end_date=prune_end_date)
    lines = document.lines
    seen: dict[Kind, set[str]] = {k: set() for k in KINDS}

    def entry(kind: Kind, row: dict[str, Any], refusals: Iterable[str]) -> PlanEntry:
        key = row[TABLES[kind][1]]
        seen[kind].add(key)
        current = stored.rows[kind].get(key)
        e = PlanEntry(kind, key, "create", lines.get((kind, key)), row)
        if current is not None:
            e.changes = _changes(current, row)
            e.action = "update" if e.changes else "unchanged"
            reasons = [r for r in refusals if r]
            if reasons:
                e.action, e.reason = "refuse", "; ".join(reasons)
        plan.entries.append(e)
        return e

    for account in document.spec.accounts:
        row = account_row(account)
        current = stored.rows["account"].get(account.account_id)
        entry("account", row, [_org_lock(stored, current, row)])
        for contract in account.contracts:
            row = contract_row(account, contract)
            current = stored.rows["contract"].get(contract.contract_id)
            entry("contract", row, [_currency_lock(conn, current, row), _account_lock(conn, stored, current, row)])
            for service in contract.services:
                row = service_row(contract, service)
                current = stored.rows["service"].get(service.service_id)
                e = entry("service", row, _service_locks(conn, current, row))
                if current is not None and e.action == "update" and service.units_source == "manual" \
                        and current["units"] != service.units:
                    effective = service.units_effective_date or datetime.now(get_settings().tz).date()
                    if reason := _manual_change_lock(conn, service.service_id, effective):
                        e.action, e.reason = "refuse", reason
                    else:
                        e.unit_change = _manual_unit_change(conn, service.service_id, current["units"],
                                                            service.units, effective)
    for kind in KINDS:
        for key, current in stored.rows[kind].items():
            if key not in seen[kind]:
                plan.entries.append(_absent(kind, key, current, prune_end_date))
    _refuse_double_billing(plan, stored)
    return plan


def _refuse_double_billing(plan: Plan, stored: _Stored) -> None:
    """A service the file adds or changes must not bill what a service of its contract left out
    of the file still bills: the same agents (machine group and view), or for a manual service
    the same name. Left out of the file, that service is kept as it is, so renaming a
    service_id, or applying an older copy of the file, would bill the customer twice. Two
    services that the file names both may count the same agents (two products per agent)."""

    def what(row: Mapping[str, Any]) -> tuple:
        if row["units_source"] == "manual":
            return ("manual", row["contract_id"], row["name"])
        return ("agents", row["contract_id"], row.get("vsa_machine_group_id"), row.get("vsa_view_id"))

    left_out = []  # (what it bills, its first and last day once this apply is done, its id)
    for e in [*plan.of("absent", "service"), *plan.of("end", "service")]:
        current = stored.rows["service"][e.key]
        end = e.row["end_date"] if e.row.get("end_date") is not None else normalise(current["end_date"])
        left_out.append((what(current), normalise(current["start_date"]), end, e.key))
    for e in [*plan.of("create", "service"), *plan.of("update", "service")]:
        mine, start, end = what(e.row), e.row["start_date"], e.row["end_date"]
        for theirs, other_start, other_end, other in left_out:
            if theirs != mine or (end is not None and end < other_start) or \
                    (other_end is not None and other_end < start):
                continue
            bills = "the same agents" if mine[0] == "agents" else f"the same name ({e.row['name']})"
            e.action, e.reason = "refuse", (
                f"bills {bills} as service {other}, which is not in the file and still bills "
                f"from {max(start, other_start)}: the customer would pay twice. If it replaces {other}, end "
                f"{other} the day before (--prune --end-date D, or put it back in the file with an end_date); "
                f"if both are wanted, put {other} back in the file")
            break


def _org_lock(stored: _Stored, current: Mapping | None, row: Mapping) -> str:
    """The account's VSA org scopes every counted service under it (SPEC 4.1)."""
    if current is None or current["vsa_org_id"] == row["vsa_org_id"]:
        return ""
    counted = stored.counted_services("account_id", row["account_id"])
    if not counted:
        return ""
    return (f"vsa_org_id cannot change ({current['vsa_org_id']} → {row['vsa_org_id']}) while "
            f"{counted} service(s) under it are counted in VSA (locked derivation); "
            "add a new account for the new org")


def _account_lock(conn: Connection, stored: _Stored, current: Mapping | None, row: Mapping) -> str:
    if current is None or current["account_id"] == row["account_id"]:
        return ""
    move = f"account_id cannot change ({current['account_id']} → {row['account_id']})"
    counted = stored.counted_services("contract_id", row["contract_id"])
    if counted:
        return (f"{move} while {counted} service(s) under it are counted in VSA (locked derivation); "
                "add a new contract under the other account")
    if conn.execute(text("SELECT EXISTS (SELECT 1 FROM invoices WHERE contract_id = :c)"),
                    {"c": row["contract_id"]}).scalar():
        return (f"{move} once the contract has invoices: they were issued to {current['account_id']}, and "
                "its exports and corrections would name the other customer; end this contract "
                "(end_date) and add a new one under the other account")
    return ""


def _manual_unit_change(conn: Connection, service_id: str, before: int, after: int,
                        effective: date) -> ManualUnitChange:
    """What recording the edit will do, by the writer's own rule (``manual_change``)."""
    recorded = day_change(conn, service_id, effective, MANUAL)
    records = manual_change(service_id, effective, before, after, recorded, datetime.now(UTC))
    return ManualUnitChange(
        before, after, effective,
        None if recorded is None else (recorded.units_before, recorded.units_after),
        None if records is None else (records.units_before, records.units_after),
    )


def _manual_change_lock(conn: Connection, service_id: str, effective: date) -> str:
    """A manual units edit takes its ``units_before`` from the service's units now, which is
    right only on or after the latest manual change already recorded: before it, every later
    month would be re-priced from the wrong units."""
    row = conn.execute(text(
        "SELECT effective_date, units_before, units_after FROM unit_changes WHERE service_id = :s "
        "AND source = 'manual' ORDER BY effective_date DESC LIMIT 1"), {"s": service_id}).first()
    if row is None or as_date(row.effective_date) <= effective:
        return ""
    latest = as_date(row.effective_date)
    return (f"units_effective_date {effective} is before the units change already recorded for "
            f"{latest} ({row.units_before} → {row.units_after}): a change cannot go before a later one; "
            f"use {latest} or later (units with units_effective_date {latest} replace that change)")


def _currency_lock(conn: Connection, current: Mapping | None, row: Mapping) -> str:
    """A billed contract keeps its currency: its posted and pending amounts are in it."""
    if current is None or current["currency"] == row["currency"]:
        return ""
    billed = conn.execute(text(
        "SELECT EXISTS (SELECT 1 FROM invoices WHERE contract_id = :c) "
        "OR EXISTS (SELECT 1 FROM billing_pending WHERE contract_id = :c)"), {"c": row["contract_id"]}).scalar()
    if not billed:
        return ""
    return (f"currency cannot change ({current['currency']} → {row['currency']}) once the contract "
            f"has invoices or pending lines: they are amounts in {current['currency']}. End this "
            f"contract (end_date) and start a new one in {row['currency']}")


def _service_locks(conn: Connection, current: Mapping | None, row: Mapping) -> list[str]:
    if current is None:
        return []
    reasons = []
    if current["contract_id"] != row["contract_id"]:
        reasons.append(f"belongs to contract {current['contract_id']}, not {row['contract_id']}; "
                       "a service cannot move between contracts: end it and add a new one")
    locked = [f for f in LOCKED_FIELDS if normalise(current[f]) != normalise(row[f])]
    if locked:
        reasons.append(f"{', '.join(locked)} cannot change once the service is saved (locked "
                       "derivation); end this service (end_date) and add a new one")
    old, new = normalise(current["unit_price"]), normalise(row["unit_price"])
    # A price typed wrong is corrected until an invoice bills it (pending lines are computed
    # again: the price is in the billing digests, billing.settled).
    if old != new and conn.execute(text("SELECT EXISTS (SELECT 1 FROM invoice_lines WHERE service_id = :s)"),
                                   {"s": row["service_id"]}).scalar():
        reasons.append(f"unit_price cannot change once an invoice bills the service ({show(old, 'unit_price')} → "
                       f"{show(new, 'unit_price')}): it "
                       "would re-price months already invoiced; end this service (end_date) and "
                       "add a new one at the new price")
    return reasons


def _absent(kind: Kind, key: str, current: Mapping[str, Any], end: date | None) -> PlanEntry:
    """An entry of the warehouse that the file does not mention: left as is, or ended on ``end``."""
    e = PlanEntry(kind, key, "absent")
    if end is None:
        e.reason = "not in the file; left as is (--prune --end-date D ends it)"
    elif kind == "account":
        e.reason = "not in the file; accounts have no end date: its contracts and services are ended"
    else:
        start, old_end = normalise(current["start_date"]), normalise(current["end_date"])
        if old_end is not None and old_end <= end:
            e.reason = f"not in the file; already ended on {old_end}"
        elif end < start:
            e.action = "refuse"
            e.reason = f"--end-date {end} is before its start_date {start}; choose a later end date"
        else:
            e.action, e.row = "end", {"end_date": end}
            e.changes = [FieldChange("end_date", old_end, end)]
            e.reason = "not in the file"
    return e
