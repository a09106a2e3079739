"""Settled months: where a contract's next billing run starts walking its ledger.

A run records per contract (``billing_settled``) the first month it left unsettled: before it,
the posted ledger equals the expected one, and stays equal while none of the contract's inputs
change. Those inputs are
- its terms and its services' names, prices, dates and starting units: two digests are
  recorded, of the services starting before the first unsettled month and of them all. A
  service starting later has no line in a settled month: when only the second digest differs
  (a new service's first count sets its starting units), the run walks the unsettled months
  of every service, not the whole ledger;
- its unit changes: a trigger on ``unit_changes`` (migration 0014) writes the contract, service
  and date of every insert, delete and update to ``billing_stale``, whoever writes (a service
  never moves to another contract: another trigger refuses it);
- its posted ledger: written only by billing, in months a run walked (a line and its
  adjustments share a month: a unit change's date is part of its id, which cannot be updated);
- the date the run is as of: a month counts as settled once its invoice date and its last day
  are both on or before it (a later run expects the same lines there) and the run had no
  line for it.

The next run starts at the earliest of the recorded month and the months of its stale rows.
It walks the whole ledger when nothing is recorded, the first digest differs (a service added
too: the ids are in it), or it runs as of an earlier date than the record. ``ENGINE`` is part
of the digests: a release that changes the engine's rules bumps it, and every contract is
walked whole once.

A nightly run also leaves alone the services whose lines cannot have changed since the last
run (``Start.kept_as_of``): their pending lines are that run's lines and stay. That holds when
the last run left its lines pending (nothing posted since: a month's posted lines can change
what it expects), the invoice month is the same, and the service has no stale row and no
change effective since, and both digests are the same (its terms, price and name are in
them). Only the others' lines are computed and rewritten: a night's cost follows its changes,
not the month's pending lines.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import Connection, bindparam, text

from agent_billing.billing import store
from agent_billing.billing.calendar import billing_month, month_start, next_month
from agent_billing.billing.model import Contract, Line, Service
from agent_billing.billing.money import price_units

ENGINE = "3"  # 2: service names in the digest (pending lines kept carry them); 3: only the
# services starting before the first unsettled month in full (``inputs_digest``)


@dataclass(frozen=True, slots=True)
class Start:
    """Where a run walks from, and what it read to decide."""

    since: date | None  # the first month walked; None: the whole ledger
    terms: tuple[Service, ...]  # the contract's services as read (``store.service_terms``)
    stale: tuple[int, ...] = ()  # the ``billing_stale`` rows read (their ``seq``)
    stale_services: frozenset[str] = frozenset()  # the services those rows name
    # the date the contract's pending lines are as of, when they are still the lines of every
    # service without a stale row or a change effective after it (None: every service walked)
    kept_as_of: date | None = None

    def walked(self, services: Sequence[Service]) -> list[Service] | None:
        """Of ``services`` (with their changes read from ``since``), those whose lines a run
        keeping the others' pending lines computes; None: it keeps none."""
        if self.kept_as_of is None:
            return None
        return [
            s for s in services
            if s.service_id in self.stale_services
            or any(c.effective_date > self.kept_as_of for c in s.changes)
        ]


@dataclass(slots=True)
class StaleRows:
    """A contract's ``billing_stale`` rows as read: their ``seq`` and the services and dates
    they name."""

    seqs: array = field(default_factory=lambda: array("q"))
    first: date | None = None  # the earliest date named
    services: set[str] = field(default_factory=set)

    def add(self, seq: int, service_id: str, day: date) -> None:
        self.seqs.append(seq)
        self.services.add(service_id)
        self.first = day if self.first is None else min(self.first, day)


@dataclass(frozen=True, slots=True)
class StaleRead:
    """Every contract's stale rows as a billing run read them before its first contract, and
    the last ``seq`` it saw."""

    rows: dict[str, StaleRows]
    through: int


def read_stale(conn: Connection) -> StaleRead:
    """One read of the whole table at the start of a billing run. It holds what was written
    since the runs before (a night's changes when billing runs nightly) and has no contract
    index, so that a change's row only appends (migration 0015). Each contract's transaction
    then reads its rows written since (``start``)."""
    found: dict[str, StaleRows] = {}
    through = 0
    rows = conn.execution_options(yield_per=10_000).execute(store.query("stale_rows"))
    for contract_id, seq, service_id, day in rows:
        found.setdefault(contract_id, StaleRows()).add(seq, service_id, day)
        through = max(through, seq)
    return StaleRead(found, through)


def _stale_rows(conn: Connection, contract_id: str, read: StaleRead | None) -> StaleRows:
    """The contract's stale rows: those the run read, and those written since, a range of the
    key: a ``seq`` is never used twice, and rows commit in ``seq`` order, as every writer of
    unit changes, a person's SQL included, holds the unit-history lock from before its first
    row until it commits (migration 0019). Without a run's read (the preview, review posting),
    all of the contract's rows."""
    rows = StaleRows()
    if read is not None and (earlier := read.rows.get(contract_id)) is not None:
        rows.seqs.extend(earlier.seqs)
        rows.first = earlier.first
        rows.services.update(earlier.services)
    after = -1 if read is None else read.through
    for seq, service_id, day in conn.execute(
        store.query("stale_changes"), {"contract_id": contract_id, "after": after}
    ):
        rows.add(seq, service_id, day)
    return rows


def inputs_digest(contract: Contract, terms: Sequence[Service], unsettled_from: date | None = None) -> str:
    """A digest of every input of the ledger other than the unit changes and the posted lines:
    the contract's terms, and each service's id, name (it describes the pending lines a run
    keeps), price, dates and starting units; with ``unsettled_from``, of the settled months
    only: a service starting on or after it has no line in them, and only its id is taken."""

    def service(t: Service) -> tuple:
        if unsettled_from is not None and t.start_date >= unsettled_from:
            return (t.service_id,)
        return t.service_id, t.name, price_units(t.unit_price), t.start_date, t.end_date, t.start_units

    parts = [
        ENGINE, contract.currency, contract.billing_day, contract.start_date, contract.end_date,
        *(service(t) for t in sorted(terms, key=lambda t: t.service_id)),
    ]
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _digests(contract: Contract, terms: Sequence[Service], unsettled_from: date) -> tuple[str, str]:
    """The two digests ``billing_settled.inputs_digest`` holds, space-separated: of the settled
    months' inputs (before ``unsettled_from``) and of every service."""
    return inputs_digest(contract, terms, unsettled_from), inputs_digest(contract, terms)


def whole(contract: Contract, terms: Sequence[Service]) -> Start:
    """Walk the whole ledger (``plan_contract(walk_all=True)``: what the tests compare with)."""
    return Start(None, tuple(terms))


def start(
    conn: Connection, contract: Contract, as_of: date, terms: Sequence[Service],
    read: StaleRead | None = None, pending: store.ContractState | None = None,
) -> Start:
    """Where a run as of ``as_of`` starts, in the contract's transaction once it is locked;
    ``read``: the run's ``read_stale`` (None: the contract's rows are read here). ``pending``:
    the contract's state, given by a run that would keep the pending lines that still hold."""
    terms = tuple(terms)
    stale = _stale_rows(conn, contract.contract_id, read)
    seqs = tuple(stale.seqs)
    record = conn.execute(store.query("settled"), {"contract_id": contract.contract_id}).mappings().first()
    if record is None or as_of < record["as_of"]:
        return Start(None, terms, seqs)
    recorded = record["inputs_digest"].split(" ")
    settled_inputs, every_service = _digests(contract, terms, record["settled_before"])
    if recorded[0] != settled_inputs:
        return Start(None, terms, seqs)
    since = record["settled_before"] if stale.first is None else min(record["settled_before"], month_start(stale.first))
    holds = recorded[1:] == [every_service]  # else a later-starting service changed
    kept = record["as_of"] if holds and pending and _lines_hold(contract, as_of, record["as_of"], pending) else None
    return Start(since, terms, seqs, frozenset(stale.services), kept)


def _lines_hold(contract: Contract, as_of: date, last: date, state: store.ContractState) -> bool:
    """Whether the pending lines of the contract's last run (as of ``last``) are still the
    lines as of ``as_of`` of its services that nothing changed for: that run kept its lines
    pending and nothing was posted since (a month's posted lines can change what it expects,
    ``expected.absorbed_count``), and ``as_of`` is in the same invoice month (no new month's
    lines are due)."""
    return (
        state.pending_as_of in (None, last)
        and (state.last_invoice_as_of is None or state.last_invoice_as_of < last)
        and billing_month(as_of, contract.billing_day, contract.start_date)
        == billing_month(last, contract.billing_day, contract.start_date)
    )


def record(
    conn: Connection, contract: Contract, begin: Start, as_of: date, lines: Iterable[Line],
    kept_from: date | None = None,
) -> date | None:
    """Record what a run as of ``as_of`` settled (in its transaction) and consume the stale rows
    it read; returns the first unsettled month (None: nothing settled). ``kept_from``: the first
    day of the pending lines the run kept, if any.

    A month with a line of this run stays unsettled, posted or pending: what a month expects
    can depend on its own posted lines (``expected.absorbed_count``), so a month is settled
    only once a run finds nothing to change in it."""
    _delete_stale(conn, begin.stale)
    conn.execute(store.statement("unsettle"), {"contract_id": contract.contract_id})
    invoiced = billing_month(as_of, contract.billing_day, contract.start_date)
    if invoiced is None:
        return None
    kept = [] if kept_from is None else [month_start(kept_from)]
    boundary = min([next_month(invoiced), month_start(as_of + timedelta(days=1)), *kept,
                    *(month_start(x.period_start) for x in lines)])
    conn.execute(
        store.statement("settle"),
        {"contract_id": contract.contract_id, "settled_before": boundary, "as_of": as_of,
         "inputs_digest": " ".join(_digests(contract, begin.terms, boundary))},
    )
    return boundary


def _delete_stale(conn: Connection, seqs: tuple[int, ...]) -> None:
    """Only the rows read: a change committed since then is walked by the next run."""
    statement = text("DELETE FROM billing_stale WHERE seq IN :seqs").bindparams(
        bindparam("seqs", expanding=True))
    store.execute_in_batches(conn, statement, "seqs", seqs)
