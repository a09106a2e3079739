"""Load a raw landing into the snapshot tables: one transaction per date, the date's rows replaced.

The load's rules (ids as exact decimal strings, ``Online`` an integer, an unreadable
``FirstCheckIn`` NULL, an unreadable ``LastCheckInTime`` refused, days since check-in from the
date written) are written once, in Python: ``clean_agent``,
``agent_row``, ``parse_vsa_timestamp`` and ``landing.parse_record``. SQLite and the small files
go through them record by record. On PostgreSQL the big files (agents, view members) are read a
few MB at a time and decoded by msgspec, in C, straight into the values kept when the read has
VSA's usual shape (for which the rules change nothing), or through the rules otherwise; the
rows go to the date's partition by one binary COPY, with nothing left for the server to parse.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import Annotated

import msgspec
from sqlalchemy import Connection, Engine, text

from agent_billing.errors import UserError
from agent_billing.sync.landing import RawLanding
from agent_billing.sync.runs import lock_snapshot_date
from agent_billing.vsa.records import normalise_id
from agent_billing.warehouse.bulk import bulk_insert, tune_for_bulk
from agent_billing.warehouse.staging import STAGING_TABLES, empty_date, mark_loaded

log = logging.getLogger(__name__)

SNAPSHOT_TABLES = ("vsa_view_members", "vsa_views", "vsa_agents", "vsa_machine_groups", "vsa_orgs")
AGENT_COLUMNS = (
    "snapshot_date", "agent_id", "agent_name", "org_id", "machine_group_id", "online",
    "last_checkin_time", "first_checkin", "days_since_checkin",
)


@dataclass(frozen=True)
class LoadResult:
    snapshot_date: date
    orgs: int
    machine_groups: int
    agents: int
    views: int
    view_members: int


def load_snapshot(engine: Engine, landing: RawLanding) -> LoadResult:
    """Replace the snapshot rows of the landing's date with its content, atomically (two runs
    of one date load one after the other: the date's lock is taken first)."""
    manifest = landing.verify()
    d = landing.snapshot_date
    with engine.begin() as conn:
        lock_snapshot_date(conn, d)
        tune_for_bulk(conn)
        written = delete_snapshot_rows(conn, d)
        mark_loaded(conn, d)
        target = dict(zip(SNAPSHOT_TABLES, written, strict=True))
        orgs = bulk_insert(
            conn, "vsa_orgs", ("snapshot_date", "org_id", "org_name", "org_ref", "parent_org_id"),
            ((d, r.get("OrgId"), storable(r.get("OrgName")), storable(r.get("OrgRef")), r.get("ParentOrgId"))
             for r in landing.records("orgs.jsonl.gz")),
        )
        groups = bulk_insert(
            conn, "vsa_machine_groups",
            ("snapshot_date", "machine_group_id", "machine_group_name", "parent_machine_group_id", "org_id"),
            ((d, r.get("MachineGroupId"), storable(r.get("MachineGroupName")), r.get("ParentMachineGroupId") or None,
              r.get("OrgId")) for r in landing.records("machine_groups.jsonl.gz")),
        )
        agents = _load_file(conn, landing, "agents.jsonl.gz", AGENTS, target["vsa_agents"], d)
        views = bulk_insert(
            conn, "vsa_views", ("snapshot_date", "view_id", "view_name"),
            ((d, r.get("ViewDefId"), storable(r.get("ViewDefName"))) for r in landing.records("views.jsonl.gz")),
        )
        members = 0
        for name in sorted(manifest["files"]):
            if name.startswith("agents_in_view/"):
                view_id = name.removeprefix("agents_in_view/").removesuffix(".jsonl.gz")
                members += _load_file(conn, landing, name, MEMBERS, target["vsa_view_members"], d, view_id)
        if conn.dialect.name == "postgresql":  # fresh statistics, or the count plans badly
            conn.execute(text(f"ANALYZE {', '.join(written)}"))
    result = LoadResult(d, orgs, groups, agents, views, members)
    log.info(
        "loaded snapshot %s: %d orgs, %d machine groups, %d agents, %d views (%d view members)",
        d, orgs, groups, agents, views, members,
    )
    return result


NULL = msgspec.Raw(b"null")
INT4 = (-(2**31), 2**31 - 1)


class _LandedAgent(msgspec.Struct):
    """The fields of an agent record the load keeps, as written (for the rules)."""

    AgentId: msgspec.Raw = NULL
    AgentName: msgspec.Raw = NULL
    OrgId: msgspec.Raw = NULL
    MachineGroupId: msgspec.Raw = NULL
    Online: msgspec.Raw = NULL
    LastCheckInTime: msgspec.Raw = NULL
    FirstCheckIn: msgspec.Raw = NULL


class _LandedMember(msgspec.Struct):
    AgentId: msgspec.Raw = NULL


# VSA's usual shape, which msgspec checks in C while it decodes a read: ids strings or JSON
# integers (made exact strings by the row, as ``normalise_id`` does), Online an integer,
# timestamps RFC 3339 as msgspec reads them (the rule of parse_vsa_timestamp). Apart from the
# ids, the rules (clean_agent) change nothing in such values.
CleanId = str | int


class CleanAgent(msgspec.Struct):
    """An agent as the load keeps it: decoded straight from a line of VSA's usual shape, or
    made by the rules (``clean_agent``) from any other line."""

    AgentId: CleanId | None
    AgentName: str | None = None
    OrgId: CleanId | None = None
    MachineGroupId: CleanId | None = None
    Online: Annotated[int, msgspec.Meta(ge=INT4[0], le=INT4[1])] | None = None
    LastCheckInTime: datetime | None = None
    FirstCheckIn: datetime | None = None


class CleanMember(msgspec.Struct):
    AgentId: CleanId | None


class RefusedRecord(UserError):
    """A landed record the load's rules refuse (the load names the file; nothing is loaded)."""


class UnreadableCheckIn(RefusedRecord):
    """An agent's ``LastCheckInTime`` is a value but no timestamp the load reads."""


def clean_agent(r: dict) -> CleanAgent:
    """The load's rules for an agent record (its ids already exact strings: ``parse_record``).

    An unreadable ``LastCheckInTime`` is refused (``UnreadableCheckIn``), not read as NULL: NULL
    means "never checked in", which the offline-days exclusion counts out, so a VSA build writing
    another format would credit every such agent (VSA's null stays NULL)."""
    name, raw_last = r.get("AgentName"), r.get("LastCheckInTime")
    last = parse_vsa_timestamp(raw_last)
    if last is None and raw_last not in (None, ""):
        raise UnreadableCheckIn(
            f"LastCheckInTime {raw_last!r} of agent {r.get('AgentId')} is not a timestamp agent-billing "
            "reads (ISO 8601, as VSA writes it)"
        )
    return CleanAgent(
        r.get("AgentId"), None if name is None else str(name), r.get("OrgId"), r.get("MachineGroupId"),
        _int(r.get("Online")), last, parse_vsa_timestamp(r.get("FirstCheckIn")),
    )


def clean_member(r: dict) -> CleanMember:
    return CleanMember(r.get("AgentId"))


def agent_row(d: date, _view_id: str | None, a: CleanAgent, tz: tzinfo | None = None) -> tuple:
    """The ``vsa_agents`` row of an agent. ``tz``: the zone a timestamp written without one is
    in (PostgreSQL's session zone, as when it reads such a timestamp as text)."""
    last, first, name = a.LastCheckInTime, a.FirstCheckIn, a.AgentName
    if name and (not name.isascii() or "\x00" in name):  # two C calls: this runs a million times
        name = storable(name)
    days = days_since_checkin(d, last)
    if tz is not None:
        last = last.replace(tzinfo=tz) if last is not None and last.tzinfo is None else last
        first = first.replace(tzinfo=tz) if first is not None and first.tzinfo is None else first
    return d, _id(a.AgentId), name, _id(a.OrgId), _id(a.MachineGroupId), a.Online, last, first, days


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value):
    """A name as both engines store it: NUL (which PostgreSQL's text refuses) and lone UTF-16
    surrogates (which no UTF-8 database takes; .NET may write them escaped in JSON) become
    U+FFFD, the replacement character, so one odd name never fails a night, on either engine."""
    return _UNSTORABLE.sub("\ufffd", value) if value.__class__ is str else value


def days_since_checkin(d: date, last_checkin: datetime | None) -> int | None:
    """Whole days from the date written in the last check-in to ``d`` (no zone conversion)."""
    return None if last_checkin is None else (d - last_checkin.date()).days


def member_row(d: date, view_id: str | None, m: CleanMember, tz: tzinfo | None = None) -> tuple:
    if (agent_id := _id(m.AgentId)) is None:
        raise RefusedRecord("a view member without AgentId")
    return d, view_id, agent_id


def _id(value) -> str | None:
    """An id as an exact decimal string: ``normalise_id``, with a fast path for the usual string."""
    return (value.strip() or None) if value.__class__ is str else normalise_id(value)


@dataclass(frozen=True)
class _Kind:
    """One kind of big landed file: its table and columns (with their PostgreSQL types, for a
    binary COPY), VSA's usual shape (``clean``), the kept fields as written (``raw``), the rules
    that make a clean record of any other record, and the row of a clean record."""

    table: str
    columns: tuple[str, ...]
    pg_types: tuple[str, ...]
    clean: type[msgspec.Struct]
    raw: type[msgspec.Struct]
    rules: Callable[[dict], msgspec.Struct]
    row: Callable[..., tuple]


AGENTS = _Kind(
    "vsa_agents", AGENT_COLUMNS, ("date", "text", "text", "text", "text", "int4", "timestamptz", "timestamptz", "int4"),
    CleanAgent, _LandedAgent, clean_agent, agent_row,
)
MEMBERS = _Kind(
    "vsa_view_members", ("snapshot_date", "view_id", "agent_id"), ("date", "text", "text"),
    CleanMember, _LandedMember, clean_member, member_row,
)


def _load_file(conn: Connection, landing: RawLanding, name: str, kind: _Kind, table: str, d: date,
               view_id: str | None = None) -> int:
    """Insert one landed file's rows into ``table`` (the kind's table, or its date partition);
    returns how many. SQLite: record by record through the rules."""
    try:
        if conn.dialect.name != "postgresql":
            rows = (kind.row(d, view_id, kind.rules(r)) for r in landing.records(name))
            return bulk_insert(conn, table, kind.columns, rows)
        return _copy_file(conn, landing, name, kind, table, d, view_id)
    except RefusedRecord as exc:
        raise type(exc)(f"{name}: {exc}: nothing was loaded") from None


def _copy_file(conn: Connection, landing: RawLanding, name: str, kind: _Kind, table: str, d: date,
               view_id: str | None) -> int:
    """Insert one landed file's rows on PostgreSQL by one binary COPY of typed values (no text
    for the server to parse). A thread reads the file (decompress, decode) one read ahead of
    the rows being written, and memory holds two reads; the Python work is mostly serial (the
    GIL), while PostgreSQL stores the rows on the other core."""
    raw = conn.connection.driver_connection
    tz = raw.info.timezone
    rows = 0
    reads = clean_reads(landing, name, kind)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="landing-reader") as reader, \
            raw.cursor() as cursor, \
            cursor.copy(f"COPY {table} ({', '.join(kind.columns)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(list(kind.pg_types))
        upcoming = reader.submit(next, reads, None)
        while (records := upcoming.result()) is not None:
            upcoming = reader.submit(next, reads, None)
            for record in records:
                copy.write_row(kind.row(d, view_id, record, tz))
            rows += len(records)
    return rows


def clean_reads(landing: RawLanding, name: str, kind: _Kind) -> Iterator[list[msgspec.Struct]]:
    """The clean records of a landed file, one read (``landing.READ_SIZE``) at a time. A read whose lines
    all have VSA's usual shape is decoded straight into clean records by msgspec, in C; any
    other read is cut to the kept fields (in C) and goes through the rules in Python."""
    clean_decoder, raw_decoder = msgspec.json.Decoder(kind.clean), msgspec.json.Decoder(kind.raw)
    encoder = msgspec.json.Encoder()
    for lines in landing.line_blocks(name):
        try:
            yield clean_decoder.decode_lines(lines)
        except msgspec.DecodeError:  # not VSA's usual shape somewhere in this read
            try:
                cut = encoder.encode_lines(raw_decoder.decode_lines(lines))
            except msgspec.DecodeError:  # not JSON: the rules' parser names the file and the error
                cut = lines
            yield [kind.rules(r) for r in landing.parse_lines(name, cut)]


def delete_snapshot_rows(conn: Connection, snapshot_date: date) -> list[str]:
    """Empty the date's snapshot rows; returns the tables that hold them (for the staging
    tables, the date's own partition on PostgreSQL: see ``warehouse.staging``)."""
    written = []
    for table in SNAPSHOT_TABLES:
        if table in STAGING_TABLES:
            written.append(empty_date(conn, table, snapshot_date))
        else:
            conn.execute(text(f"DELETE FROM {table} WHERE snapshot_date = :d"), {"d": snapshot_date})
            written.append(table)
    return written


def _int(value) -> int | None:
    """An integer column (``Online``) from a JSON integer or a string of one; anything else
    (or beyond the column's range) is NULL, which the quality gate reports (not null, in VSA's
    codes) instead of the load failing."""
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, Decimal):
        number = int(value) if value == value.to_integral_value() else None
    else:
        try:
            number = int(value.strip()) if isinstance(value, str) else None
        except ValueError:
            number = None
    return number if number is not None and INT4[0] <= number <= INT4[1] else None


def parse_vsa_timestamp(value) -> datetime | None:
    """A VSA timestamp, read leniently (its format differs by build): RFC 3339 as msgspec reads
    it (the same reading as the decode of VSA's usual shape, so a read decoded by msgspec and one
    read here agree), else any ISO 8601 form Python reads; anything else is unreadable (None)."""
    if not value or not isinstance(value, str):
        return None
    try:
        return msgspec.convert(value, datetime)
    except msgspec.ValidationError:
        pass
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
