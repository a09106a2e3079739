"""Load a raw landing into the snapshot tables: one transaction per date, the date's rows replaced.

The load's rules (ids as exact decimal strings, ``Online`` an integer, unreadable timestamps
NULL, days since check-in from the date written) are written once, in Python: ``agent_row``,
``member_row``, ``parse_vsa_timestamp`` and ``landing.parse_record``. SQLite and the small files
go through them record by record. On PostgreSQL the big files (agents, view members) are read
in batches that msgspec cuts down to the kept fields and checks, in C, for VSA's usual shape,
for which the rules change nothing: such a batch is COPYed as JSON text into a temporary table
and read into typed columns by one INSERT ... SELECT (``include/sql/sync/load_*_clean.sql``);
any other batch goes through the rules in Python and is COPYed as rows.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import msgspec
from sqlalchemy import Connection, Engine, text

from agent_billing.sql import load_sql
from agent_billing.sync.landing import RawLanding
from agent_billing.sync.runs import lock_snapshot_date
from agent_billing.warehouse.bulk import bulk_insert, tune_for_bulk
from agent_billing.warehouse.staging import STAGING_TABLES, empty_date

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
        orgs = bulk_insert(
            conn, "vsa_orgs", ("snapshot_date", "org_id", "org_name", "org_ref", "parent_org_id"),
            ((d, r.get("OrgId"), r.get("OrgName"), r.get("OrgRef"), r.get("ParentOrgId"))
             for r in landing.records("orgs.jsonl.gz")),
        )
        groups = bulk_insert(
            conn, "vsa_machine_groups",
            ("snapshot_date", "machine_group_id", "machine_group_name", "parent_machine_group_id", "org_id"),
            ((d, r.get("MachineGroupId"), r.get("MachineGroupName"), r.get("ParentMachineGroupId") or None,
              r.get("OrgId")) for r in landing.records("machine_groups.jsonl.gz")),
        )
        if conn.dialect.name == "postgresql":
            conn.execute(text("CREATE TEMPORARY TABLE landed_lines (j text) ON COMMIT DROP"))
        agents = _load_file(conn, landing, "agents.jsonl.gz", AGENTS, d)
        views = bulk_insert(
            conn, "vsa_views", ("snapshot_date", "view_id", "view_name"),
            ((d, r.get("ViewDefId"), r.get("ViewDefName")) for r in landing.records("views.jsonl.gz")),
        )
        members = 0
        for name in sorted(manifest["files"]):
            if name.startswith("agents_in_view/"):
                view_id = name.removeprefix("agents_in_view/").removesuffix(".jsonl.gz")
                members += _load_file(conn, landing, name, MEMBERS, d, view_id)
        if conn.dialect.name == "postgresql":  # fresh statistics, or the count plans badly
            conn.execute(text(f"ANALYZE {', '.join(written)}"))
    result = LoadResult(d, orgs, groups, agents, views, members)
    log.info(
        "loaded snapshot %s: %d orgs, %d machine groups, %d agents, %d views (%d view members)",
        d, orgs, groups, agents, views, members,
    )
    return result


NULL = msgspec.Raw(b"null")


class _LandedAgent(msgspec.Struct):
    """The fields of an agent record the load keeps, as raw JSON (interpreted in SQL)."""

    AgentId: msgspec.Raw = NULL
    AgentName: msgspec.Raw = NULL
    OrgId: msgspec.Raw = NULL
    MachineGroupId: msgspec.Raw = NULL
    Online: msgspec.Raw = NULL
    LastCheckInTime: msgspec.Raw = NULL
    FirstCheckIn: msgspec.Raw = NULL


class _LandedMember(msgspec.Struct):
    AgentId: msgspec.Raw = NULL


# VSA's usual shape, checked by msgspec in C while it cuts a read: ids strings without
# surrounding whitespace or JSON integers, Online an integer, timestamps RFC 3339 as msgspec reads
# them (the rule of parse_vsa_timestamp). For such values the rules of the load (agent_row) are
# the identity, so PostgreSQL reads a read of such lines into typed columns (load_*_clean.sql:
# no rule of its own); any other read goes through the rules in Python.
CleanId = Annotated[str, msgspec.Meta(pattern=r"(?s)\A\S(.*\S)?\Z")] | int


class _CleanAgent(msgspec.Struct):
    AgentId: CleanId
    AgentName: str | None = None
    OrgId: CleanId | None = None
    MachineGroupId: CleanId | None = None
    Online: int | None = None
    LastCheckInTime: datetime | None = None
    FirstCheckIn: datetime | None = None


class _CleanMember(msgspec.Struct):
    AgentId: CleanId


def agent_row(d: date, _view_id: str | None, r: dict) -> tuple:
    """The ``vsa_agents`` row of a landed agent record (ids already exact strings: parse_record)."""
    last = parse_vsa_timestamp(r.get("LastCheckInTime"))
    return (
        d, r.get("AgentId"), r.get("AgentName"), r.get("OrgId"), r.get("MachineGroupId"),
        _int(r.get("Online")), last, parse_vsa_timestamp(r.get("FirstCheckIn")),
        (d - last.date()).days if last else None,
    )


def member_row(d: date, view_id: str | None, r: dict) -> tuple:
    return d, view_id, r.get("AgentId")


@dataclass(frozen=True)
class _Kind:
    """One kind of big landed file: its table, the row the load's rules make of a record, and,
    for PostgreSQL, how msgspec cuts a read of it (``raw``: the kept fields as written) and
    checks it for VSA's usual shape (``clean``), read in SQL by ``clean_sql``."""

    table: str
    columns: tuple[str, ...]
    row: Callable[[date, str | None, dict], tuple]
    clean: type[msgspec.Struct]
    raw: type[msgspec.Struct]
    clean_sql: str


AGENTS = _Kind("vsa_agents", AGENT_COLUMNS, agent_row, _CleanAgent, _LandedAgent, "sync/load_agents_clean.sql")
MEMBERS = _Kind("vsa_view_members", ("snapshot_date", "view_id", "agent_id"), member_row, _CleanMember,
                _LandedMember, "sync/load_view_members_clean.sql")
CHUNK = 8 << 20  # decompressed bytes per read: memory stays flat whatever the snapshot's size
BATCH = 4  # reads per batch (~32 MB of JSON, ~25,000 agents): the unit PostgreSQL parses at once


def _load_file(conn: Connection, landing: RawLanding, name: str, kind: _Kind, d: date,
               view_id: str | None = None) -> int:
    """Insert one landed file's rows; returns how many."""
    if conn.dialect.name != "postgresql":
        return bulk_insert(conn, kind.table, kind.columns, (kind.row(d, view_id, r) for r in landing.records(name)))
    return _load_in_database(conn, landing, name, kind, d, view_id)


def _load_in_database(conn: Connection, landing: RawLanding, name: str, kind: _Kind, d: date,
                      view_id: str | None) -> int:
    """Insert one landed file's rows on PostgreSQL, batch by batch, without Python per row for
    the batches of VSA's usual shape: their JSON lines are COPYed as text into ``landed_lines``
    and read into typed columns by one INSERT ... SELECT. The lines of any other batch go
    through the rules in Python (``kind.row``) and are COPYed as rows.

    msgspec cuts each batch down to the fields the load keeps (decoding and re-encoding whole
    batches in C), so PostgreSQL parses a few fields per agent instead of VSA's forty, and
    checks the shape while it cuts. A thread prepares the next batch (decompress and cut) while
    PostgreSQL parses the current one: the two cores work at once, and memory holds two batches.
    """
    batches = _slim_batches(landing.path / name, kind)
    raw = conn.connection.driver_connection
    # CSV with delimiter and quote characters that valid JSON text never holds raw: each line
    # arrives whole, backslashes untouched.
    copy_sql = "COPY landed_lines (j) FROM STDIN WITH (FORMAT csv, DELIMITER E'\\x1f', QUOTE E'\\x1e')"
    rows = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="landing-reader") as reader:
        upcoming = reader.submit(next, batches, None)
        while (batch := upcoming.result()) is not None:
            upcoming = reader.submit(next, batches, None)
            clean, lines = batch
            if not clean:
                records = landing.parse_lines(name, lines)
                rows += bulk_insert(conn, kind.table, kind.columns, (kind.row(d, view_id, r) for r in records))
                continue
            conn.execute(text("TRUNCATE landed_lines"))
            with raw.cursor() as cursor, cursor.copy(copy_sql) as copy:
                copy.write(lines)
            rows += conn.execute(load_sql(kind.clean_sql), {"snapshot_date": d, "view_id": view_id}).rowcount
    return rows


def _slim_batches(path: Path, kind: _Kind) -> Iterator[tuple[bool, bytes]]:
    """The file's JSON lines cut down to the kind's fields, in batches of about ``BATCH``
    reads, each marked clean when all its lines have VSA's usual shape."""
    clean_decoder, raw_decoder = msgspec.json.Decoder(kind.clean), msgspec.json.Decoder(kind.raw)
    encoder = msgspec.json.Encoder()

    def cut(lines: bytes) -> tuple[bool, bytes]:
        try:
            return True, encoder.encode_lines(clean_decoder.decode_lines(lines))
        except msgspec.ValidationError:  # not VSA's usual shape somewhere in this read
            return False, encoder.encode_lines(raw_decoder.decode_lines(lines))

    pending, pending_clean = [], True
    for lines in _line_blocks(path):
        clean, slim = cut(lines)
        if pending and (clean != pending_clean or len(pending) == BATCH):
            yield pending_clean, b"".join(pending)
            pending = []
        pending.append(slim)
        pending_clean = clean
    if pending:
        yield pending_clean, b"".join(pending)


def _line_blocks(path: Path) -> Iterator[bytes]:
    """The file's decompressed content in blocks of whole lines, one block per read."""
    rest = b""
    for chunk in _gunzip(path):
        lines, _, rest = (rest + chunk).rpartition(b"\n")
        if lines:
            yield lines
    if rest.strip():
        yield rest


def _gunzip(path: Path) -> Iterator[bytes]:
    """The decompressed bytes of a gzip file, in pieces of at most ``CHUNK`` (zlib checks each
    member's CRC itself; ``gzip.open`` computes it a second time in Python)."""
    with open(path, "rb") as fh:
        inflate, started = zlib.decompressobj(wbits=31), False
        while block := fh.read(CHUNK >> 3):
            while block:
                started = True
                yield inflate.decompress(block, CHUNK)
                block = inflate.unconsumed_tail
                if inflate.eof:  # another gzip member may follow
                    block, inflate, started = inflate.unused_data, zlib.decompressobj(wbits=31), False
        if started:
            raise EOFError(f"{path} ended before the end of its compressed stream")


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
    """An integer field (``Online``) from a JSON integer or a string of one; anything else is
    NULL, which the quality gate reports (not null, in VSA's codes) instead of the load failing."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else None
    try:
        return int(value.strip()) if isinstance(value, str) else None
    except ValueError:
        return None


def parse_vsa_timestamp(value) -> datetime | None:
    """A VSA timestamp, read leniently (its format differs by build): RFC 3339 as msgspec reads
    it (the same reading as the check of VSA's usual shape, so a batch read in SQL and one read
    here agree), else any ISO 8601 form Python reads; anything else is unreadable (None)."""
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
