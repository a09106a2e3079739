"""Reading and writing the billing tables through the SQL files of ``include/sql/billing``.

Dates and money are typed explicitly on every statement: SQLite has no DATE or NUMERIC
storage of its own, and the typed columns turn its values back into ``date``/``Decimal``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import date
from decimal import Decimal
from functools import cache
from itertools import islice

from sqlalchemy import Connection, Date, Dialect, Numeric, bindparam
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.selectable import TextualSelect

from agent_billing.billing.calendar import month_end
from agent_billing.billing.model import Contract, Line, PostedLine, Service, UnitChange
from agent_billing.billing.money import (
    amount_max,
    amount_max_in_words,
    price_units,
    quantize,
    to_e4,
)
from agent_billing.billing.timeline import ordered, starting_units
from agent_billing.errors import UserError
from agent_billing.sql import load_sql
from agent_billing.sync.changes import share_unit_history
from agent_billing.warehouse.bulk import bulk_insert

MONEY = Numeric(18, 4)
_TYPES = {
    **{name: MONEY for name in ("amount", "unit_price", "total", "invoice_total")},
    **{
        name: Date()
        for name in (
            "as_of", "start_date", "end_date", "effective_date", "period_start", "period_end",
            "invoice_date", "invoice_month", "last_invoice_month", "last_invoice_as_of",
            "pending_as_of", "snapshot_date", "first_count_date", "first_reading_date",
            "since", "settled_before", "from_date", "first_day",
        )
    },
}


def typed_params(clause: TextClause) -> TextClause:
    """``clause`` with its date and money parameters typed."""
    names = [p for p in clause.compile().params if p in _TYPES]
    return clause.bindparams(*(bindparam(p, type_=_TYPES[p]) for p in names))


def typed_select(clause: TextClause) -> TextualSelect:
    """``clause`` with its date and money parameters and result columns typed."""
    return typed_params(clause).columns(**_TYPES)


@cache
def statement(name: str) -> TextClause:
    return typed_params(load_sql(f"billing/{name}.sql"))


@cache
def query(name: str) -> TextualSelect:
    return typed_select(load_sql(f"billing/{name}.sql"))


@dataclass(frozen=True, slots=True)
class ContractState:
    last_invoice_month: date | None
    last_invoice_as_of: date | None
    pending_as_of: date | None


def contract_ids(conn: Connection) -> list[str]:
    return list(conn.execute(query("contract_ids")).scalars().all())


def first_contract_start(conn: Connection) -> date | None:
    return conn.execute(query("first_contract_start")).scalar()


def nights_to_recount(conn: Connection, contract_id: str, as_of: date) -> dict[str, list[date]]:
    """The contract's services with nights up to ``as_of`` that ``contracts apply`` asked to
    recount and no count has taken since (``nights_to_recount``), each with its nights."""
    return held_contracts(conn, as_of, contract_id).get(contract_id, {})


def held_contracts(conn: Connection, as_of: date, contract_id: str | None = None) -> dict[str, dict[str, list[date]]]:
    """``nights_to_recount`` of every contract (or ``contract_id``) that has some, in one query."""
    nights: dict[str, dict[str, list[date]]] = defaultdict(lambda: defaultdict(list))
    for row in conn.execute(query("nights_to_recount"), {"contract_id": contract_id, "as_of": as_of}):
        nights[row.contract_id][row.service_id].append(row.snapshot_date)
    return {cid: dict(services) for cid, services in nights.items()}


def find_contract(conn: Connection, contract_id: str) -> Contract | None:
    row = conn.execute(query("contract"), {"contract_id": contract_id}).mappings().first()
    return Contract(**row) if row else None


def lock_contract(conn: Connection, contract_id: str) -> Contract:
    """Lock the contract for the rest of this transaction and read it. The unit history is
    shared first (``share_unit_history``): the contract's changes and first observations, read
    in separate statements, are then one state, not a re-derivation's before and after."""
    share_unit_history(conn)
    row = conn.execute(query("lock_contract"), {"contract_id": contract_id}).mappings().first()
    if row is None:
        raise UserError(f"unknown contract {contract_id}")
    return Contract(**row)


def service_terms(conn: Connection, contract: Contract, as_of: date) -> list[Service]:
    """The contract's services, sorted by id, with their starting units as a run as of
    ``as_of`` knows them (``timeline.starting_units`` of the observations and changes on or
    before it: ``services.sql``) and no changes yet."""
    if conn.dialect.name == "postgresql":
        conn.execute(statement("no_jit"))
    rows = conn.execute(query("services"), {"contract_id": contract.contract_id, "as_of": as_of}).mappings()
    first = _units_before_changes(conn, contract, as_of)
    return [
        Service(
            service_id=row["service_id"], name=row["name"], unit_price=row["unit_price"],
            start_date=row["start_date"], end_date=row["end_date"],
            start_units=starting_units(
                _first_observation(row), first.get(row["service_id"]), row["configured_units"]),
        )
        for row in sorted(rows, key=lambda r: r["service_id"])
    ]


def _units_before_changes(conn: Connection, contract: Contract, as_of: date) -> dict[str, int]:
    """Per service with changes (an rmm service's on or before ``as_of``), the units its first
    change started from: the first, in ``timeline.ordered`` order, of its first date's changes."""
    params = {"contract_id": contract.contract_id, "as_of": as_of}
    first: dict[str, list[UnitChange]] = defaultdict(list)
    for row in _all_rows(conn, "first_changes", params):
        first[row[1]].append(UnitChange(*row))
    return {service_id: ordered(changes)[0].units_before for service_id, changes in first.items()}


def uncounted_services(conn: Connection, contract: Contract, as_of: date, month: date) -> list[str]:
    """The contract's counted services active in ``month`` that no good night nor Get Units Now
    press has observed on or before ``as_of``: a run bills them 0 units until their first count."""
    if contract.end_date is not None and contract.end_date < month:
        return []  # an ended contract bills no service of the month
    rows = conn.execute(query("services"), {"contract_id": contract.contract_id, "as_of": as_of}).mappings()
    changed = _units_before_changes(conn, contract, as_of)
    return sorted(
        row["service_id"] for row in rows
        if row["units_source"] == "rmm_agent_count" and _first_observation(row) is None
        and row["service_id"] not in changed
        and row["start_date"] <= month_end(month) and (row["end_date"] is None or row["end_date"] >= month)
    )


def nights_not_counted(conn: Connection, first_day: date, as_of: date) -> dict[date, str]:
    """The nights from ``first_day`` through ``as_of`` that are quarantined or failed, each
    with its status, in date order."""
    rows = conn.execute(query("nights_not_counted"), {"first_day": first_day, "as_of": as_of})
    return {row.snapshot_date: row.status for row in rows}


def load_services(
    conn: Connection, contract: Contract, as_of: date, terms: list[Service], since: date | None = None
) -> list[Service]:
    """The services (``service_terms``) with their changes effective from the month ``since``
    (None: all of them) through ``as_of``, and the units they open that month with."""
    params = {"contract_id": contract.contract_id, "as_of": as_of, "since": since or date.min}
    changes: dict[str, list[UnitChange]] = defaultdict(list)
    for row in _all_rows(conn, "unit_changes", params):
        changes[row[1]].append(UnitChange(*row))
    opening: dict[str, list[UnitChange]] = defaultdict(list)
    if since is not None:
        for row in _all_rows(conn, "opening_changes", params):
            opening[row[1]].append(UnitChange(*row))
    return [
        replace(
            t,
            start_units=ordered(before)[-1].units_after if (before := opening.get(t.service_id)) else t.start_units,
            changes=ordered(changes.get(t.service_id, ())),
        )
        for t in terms
    ]


def load_posted_net(
    conn: Connection, contract: Contract, since: date | None = None,
    services: Collection[str] | None = None,
) -> dict[str | None, tuple[int, int]]:
    """Net units and amount (ten-thousandths) per posted normal or prorated line key of the
    months from ``since`` (None: all) (the key None: adjustments whose line is missing), of the
    ``services`` (None: every service)."""
    rows = _all_rows(conn, "posted_net", {"contract_id": contract.contract_id, "since": since or date.min})
    return {
        key: (units, amount_e4) for key, service_id, units, amount_e4 in rows
        if services is None or service_id in services
    }


def _all_rows(conn: Connection, name: str, params: dict) -> list:
    """Every row of a query of thousands of rows per contract. On PostgreSQL straight from the
    driver's cursor in this transaction (its rows are already typed: a SQLAlchemy row object
    per row would cost as much again); elsewhere through SQLAlchemy's typed columns."""
    if conn.dialect.name != "postgresql":
        return conn.execute(query(name), params).all()
    cursor = conn.connection.cursor()
    try:
        cursor.execute(_driver_sql(name, conn.dialect), params)
        return cursor.fetchall()
    finally:
        cursor.close()


@cache
def _driver_sql(name: str, dialect: Dialect) -> str:
    return str(query(name).compile(dialect=dialect))


def load_posted(
    conn: Connection, contract: Contract, since: date | None = None,
    services: Collection[str] | None = None,
) -> list[PostedLine]:
    """The posted lines of the months from ``since`` (None: all), of the ``services`` (None:
    every service)."""
    params = {"contract_id": contract.contract_id, "since": since or date.min}
    rows = conn.execute(query("posted_lines"), params).all()
    return [PostedLine(*row) for row in rows if services is None or row.service_id in services]


def load_pending(conn: Connection, contract: Contract) -> tuple[list[Line], date | None]:
    """The contract's pending lines and the date they are as of (``billing_pending_runs``)."""
    rows = conn.execute(query("pending_lines"), {"contract_id": contract.contract_id}).mappings()
    lines, as_of = [], None
    for row in rows:
        lines.append(Line(**{name: row[name] for name in _LINE_FIELDS}))
        as_of = row["as_of"]
    return lines, as_of


def load_state(conn: Connection, contract_id: str) -> ContractState:
    row = conn.execute(query("contract_state"), {"contract_id": contract_id}).mappings().one()
    return ContractState(**row)


_LINE_FIELDS = tuple(f.name for f in fields(Line))
_LINE_COLUMNS = (
    "line_id", "contract_id", "service_id", "kind", "period_start", "period_end", "units",
    "unit_price", "days", "days_in_period", "amount", "change_id", "adjusts_line_id",
    "description", "line_key", "amount_e4", "unit_price_e4",
)


def _line_row(line: Line, contract_id: str, dialect: str) -> tuple:
    """A line's column values: the only place money is written, NUMERIC and ``*_e4`` alike.
    An amount beyond the engine's limit (``money.amount_max``) is refused here, naming the
    contract and service (the database would refuse the whole contract with a bare numeric
    overflow, or SQLite keep it rounded)."""
    if abs(line.amount) > amount_max(dialect):
        raise UserError(
            f"contract {contract_id}, service {line.service_id}: its {line.kind} line for "
            f"{line.period_start} to {line.period_end} comes to {line.amount}, more than an amount "
            f"can be ({amount_max_in_words(dialect)}): check the service's unit_price and units"
        )
    return (
        line.line_id, contract_id, line.service_id, line.kind, line.period_start,
        line.period_end, line.units, line.unit_price, line.days, line.days_in_period,
        line.amount, line.change_id, line.adjusts_line_id, line.description, line.line_key,
        to_e4(line.amount), price_units(line.unit_price),
    )


def insert_invoice(conn: Connection, invoice: dict, lines: Sequence[Line]) -> None:
    """Post an invoice and its lines, with the account's and the services' names as they are
    now (what the customer receives; shows and exports read these, never the current names)."""
    names = dict(conn.execute(statement("service_names"), {"contract_id": invoice["contract_id"]}).all())
    dialect = conn.dialect.name
    rows = [  # each line checked
        (*_line_row(x, invoice["contract_id"], dialect), invoice["invoice_id"], names[x.service_id]) for x in lines
    ]
    if abs(invoice["total"]) > amount_max(dialect):
        raise UserError(
            f"contract {invoice['contract_id']}: invoice {invoice['invoice_id']} comes to {invoice['total']}, "
            f"more than an amount can be ({amount_max_in_words(dialect)}): check its services' unit_price and units"
        )
    conn.execute(statement("insert_invoice"), {**invoice, "total_e4": to_e4(invoice["total"])})
    bulk_insert(conn, "invoice_lines", (*_LINE_COLUMNS, "invoice_id", "service_name"), rows)
    with_agents = [{"line_id": x.line_id, "change_id": x.change_id} for x in lines if x.bills_agents]
    if with_agents:  # the machines they bill, for good: a re-derivation rewrites unit_change_agents
        conn.execute(statement("keep_line_agents"), with_agents)


def close_cycle(
    conn: Connection, contract_id: str, month: date, as_of: date, invoice: str | None
) -> None:
    conn.execute(
        statement("close_cycle"),
        {"contract_id": contract_id, "invoice_month": month, "as_of": as_of, "invoice_id": invoice},
    )


def replace_pending(conn: Connection, contract_id: str, as_of: date, lines: Iterable[Line]) -> None:
    """The contract's pending lines are ``lines``, as of ``as_of``."""
    conn.execute(statement("delete_pending"), {"contract_id": contract_id})
    written = bulk_insert(conn, "billing_pending", _LINE_COLUMNS, (_line_row(x, contract_id, conn.dialect.name) for x in lines))
    _date_pending(conn, contract_id, as_of if written else None)


def _date_pending(conn: Connection, contract_id: str, as_of: date | None) -> None:
    """Record the date the contract's pending lines are as of, one row per contract (migration
    0020: a line kept by a later run is not rewritten); None: it has none."""
    if as_of is None:
        conn.execute(statement("undate_pending"), {"contract_id": contract_id})
    else:
        conn.execute(statement("date_pending"), {"contract_id": contract_id, "as_of": as_of})


@dataclass(frozen=True, slots=True)
class KeptPending:
    """The pending lines a run kept (``refresh_pending``): how many, their total, and the first
    day of the earliest (None: none kept)."""

    lines: int
    total: Decimal
    first_day: date | None


_IN_BATCH = 5_000  # values bound in one statement's expanding IN list


def execute_in_batches(conn: Connection, statement, name: str, values: Iterable, **params) -> None:
    """Execute ``statement``, whose parameter ``name`` is an expanding IN list, for ``values``
    a batch at a time (a bound on one statement's parameters)."""
    iterator = iter(values)
    while batch := list(islice(iterator, _IN_BATCH)):
        conn.execute(statement, {**params, name: batch})


def refresh_pending(
    conn: Connection, contract: Contract, as_of: date, lines: Iterable[Line], walked: Collection[str]
) -> KeptPending:
    """Replace the pending lines of the services ``walked`` with ``lines`` (theirs); the other
    services' pending lines, which still hold, stay as they are. All are as of ``as_of``;
    returns what was kept."""
    delete = statement("delete_pending_of").bindparams(bindparam("services", expanding=True))
    execute_in_batches(conn, delete, "services", sorted(walked), contract_id=contract.contract_id)
    row = conn.execute(query("pending_summary"), {"contract_id": contract.contract_id}).one()
    written = bulk_insert(conn, "billing_pending", _LINE_COLUMNS, (_line_row(x, contract.contract_id, conn.dialect.name) for x in lines))
    _date_pending(conn, contract.contract_id, as_of if row.lines or written else None)
    total = quantize(Decimal(row.total_e4 or 0).scaleb(-4), contract.currency)
    return KeptPending(row.lines, total, row.first_day)


def _first_observation(row) -> int | None:
    """Units of a service's first observation: its first good count or first reading (the
    count's date is read only for a service with readings: NULL otherwise). Used only for a
    service without unit changes, whose observations all have the same units: on a day with
    both, which came first does not matter (with changes, ``starting_units`` takes the first
    change's units before, which the unit history ordered by time)."""
    reading_first = row["first_reading_date"] is not None and (
        row["first_count_date"] is None or row["first_reading_date"] < row["first_count_date"]
    )
    return row["first_reading"] if reading_first else row["first_count"]


def change_agents(conn: Connection, contract_id: str) -> dict[str, list[dict]]:
    """The agents behind each unit change of the contract's services (``unit_change_agents``),
    by change id: what a pending prorated line bills, machine by machine."""
    return _agents_by(conn.execute(query("change_agents"), {"contract_id": contract_id}), "change_id")


def line_agents(conn: Connection, invoice_id: str) -> dict[str, list[dict]]:
    """The agents behind each line of a posted invoice, by line id, as posted
    (``invoice_line_agents``)."""
    return _agents_by(conn.execute(query("line_agents"), {"invoice_id": invoice_id}), "line_id")


def _agents_by(rows, key: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for row in rows.mappings():
        out[row[key]].append({"agent_id": row["agent_id"], "agent_name": row["agent_name"], "event": row["event"]})
    return out
