"""``nights_to_recount`` (migration 0021): the synced nights a contracts change made a counted
service countable on, which hold its contract's invoices until they are counted again.

``contracts apply`` records them (``record_nights_to_recount``); the night's count deletes them
(``sync.changes.counting.recounted``, except a service whose view the night's landing has no
extract of); a person accepts a night that cannot be re-run
(``accept_uncounted``: its days then bill at the units of another night); posting reads them
(``billing.post``).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from agent_billing.errors import UserError
from agent_billing.settings import get_settings
from agent_billing.sync.dates import date_runs
from agent_billing.sync.landing import LandingError, RawLanding
from agent_billing.warehouse.values import as_date

NIGHTS_TO_RECOUNT = sa.table("nights_to_recount", sa.column("service_id", sa.Text), sa.column("snapshot_date", sa.Date))


def recorded_nights(conn: Connection, services: list[str]) -> set[tuple[str, date]]:
    """(service, night) of ``services`` in ``nights_to_recount``."""
    return {(s, as_date(d)) for s, d in conn.execute(
        sa.select(NIGHTS_TO_RECOUNT.c.service_id, NIGHTS_TO_RECOUNT.c.snapshot_date)
        .where(NIGHTS_TO_RECOUNT.c.service_id.in_(services)))}


def record_nights_to_recount(conn: Connection, services: list[str], uncounted: set[tuple[str, date]],
                             recount: list[dict]) -> None:
    """Add ``recount`` (rows: service_id, snapshot_date); drop the nights of ``services`` that are
    no longer ``uncounted`` (a change undone: the service is not to be counted there any more)."""
    if not services:
        return
    recorded = recorded_nights(conn, services)
    if gone := [{"s": s, "d": d} for s, d in recorded - uncounted]:
        conn.execute(sa.delete(NIGHTS_TO_RECOUNT).where(_key()), gone)
    if new := [r for r in recount if (r["service_id"], r["snapshot_date"]) not in recorded]:
        conn.execute(sa.insert(NIGHTS_TO_RECOUNT), new)


def accept_uncounted(engine: Engine, service_id: str, night: date,
                     through: date | None = None) -> tuple[list[date], list[date]]:
    """A person accepts that ``service_id`` stays uncounted on ``night`` (up to ``through``: each
    recorded night of the range), whose landing is gone, damaged or without the service's view,
    so no re-run can count it: its days then bill at the units of another night, and the night
    no longer holds the contract's invoices. A night whose landing can count the service is
    left recorded, to re-run (refused when it is the only one: nothing to accept); refused too
    where the landings cannot be seen (the raw volume not mounted): whether a re-run can count
    the night is not known there. Returns the nights accepted and those left to re-run."""
    from agent_billing.sync.pipeline import refuse_missing_raw_folder

    through = through or night
    if through < night:
        raise UserError(f"--through {through} is before {night}: give the first night, then the last")
    raw_path = get_settings().raw_path
    with engine.connect() as conn:
        left = sorted(d for _, d in recorded_nights(conn, [service_id]))
        if not left and conn.execute(sa.text("SELECT 1 FROM services WHERE service_id = :s"),
                                     {"s": service_id}).first() is None:
            raise UserError(f"no service '{service_id}' in the warehouse (ids are case-sensitive)")
    chosen = [d for d in left if night <= d <= through]
    if not chosen:
        raise UserError(
            f"service {service_id} has no night {night if through == night else f'from {night} to {through}'} to "
            "recount" + (f": its nights to recount are {date_runs(left)}" if left else ": it has none")
        )
    refuse_missing_raw_folder(engine, raw_path, "nothing was accepted")
    with engine.begin() as conn:
        view = conn.execute(sa.text("SELECT vsa_view_id FROM services WHERE service_id = :s"), {"s": service_id}).scalar()
        countable = [d for d in chosen if raw_path.is_dir() and recountable(raw_path, d, view)
                     and recountable(raw_path, d, view, verify=True)]  # the checksums only where the files are
        if countable == [night] == chosen:
            raise UserError(
                f"night {night}'s landing can count service {service_id}: re-run it (agent-billing sync --date "
                f"{night}) rather than accept it uncounted")
        if countable == chosen:
            raise UserError(
                f"the landings of {date_runs(countable)} can count service {service_id}: re-run those nights "
                "(agent-billing sync --date D for each) rather than accept them uncounted; nothing was accepted")
        accepted = [d for d in chosen if d not in countable]
        conn.execute(sa.delete(NIGHTS_TO_RECOUNT).where(_key()), [{"s": service_id, "d": d} for d in accepted])
    return accepted, countable


def recountable(raw_path: Path, night: date, view: str | None, *, verify: bool = False) -> bool:
    """Whether a re-run of the night can count a service: its landing is there, with the view;
    ``verify``: and every file matches its checksum (a damaged landing is refused by a re-run;
    reading every file is for one night, not for the many nights an apply may name)."""
    landing = RawLanding(raw_path, night)
    try:
        manifest = (landing.verify() if verify else landing.manifest()) if landing.exists() else None
    except LandingError:
        return False
    return manifest is not None and (view is None or f"agents_in_view/{view}.jsonl.gz" in manifest["files"])


def _key() -> sa.ColumnElement[bool]:
    return (NIGHTS_TO_RECOUNT.c.service_id == sa.bindparam("s")) & (NIGHTS_TO_RECOUNT.c.snapshot_date == sa.bindparam("d"))
