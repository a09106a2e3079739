"""The load turns landed JSON lines into the rows its rules make (``agent_row``), on both
engines: on PostgreSQL the reads of VSA's usual shape are decoded by msgspec straight into clean
records, the others go through the rules."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import text

from agent_billing.sync import landing as landing_module
from agent_billing.sync.landing import LandingError, RawLanding
from agent_billing.sync.load import agent_row, clean_agent, load_snapshot
from agent_billing.warehouse.values import as_date, as_datetime

from .conftest import AGENT, DAYS, G_SRV, G_WS, ORG, VIEW, write_landing

D1 = sorted(DAYS)[0]


def awkward(records):
    """Ids as JSON numbers and padded strings, timestamps with offsets or unreadable, no status."""
    agents = records["agents.jsonl.gz"]
    agents[0]["AgentId"] = int(agents[0]["AgentId"])
    agents[0]["OrgId"] = int(ORG)
    agents[1]["MachineGroupId"] = f"  {G_WS} "
    agents[1]["LastCheckInTime"] = "2024-02-27T23:30:00-05:00"
    agents[2]["LastCheckInTime"] = None  # never checked in, as VSA writes it
    agents[2]["FirstCheckIn"] = "not a time"  # unreadable: NULL (nothing is counted by it)
    agents[3]["FirstCheckIn"] = ""
    del agents[3]["Online"]
    agents[4]["LastCheckInTime"] = "2024-02-20T10:00:00"
    agents[4]["AgentName"] = 'quote" back\\slash, comma'
    records[f"agents_in_view/{VIEW}.jsonl.gz"][0]["AgentId"] = int(AGENT["a1"])


def normal(row):
    d, agent_id, name, org, group, online, last, first, days = row
    return (str(as_date(d)), agent_id, name, org, group, online,
            as_datetime(last) and as_datetime(last).timestamp(), as_datetime(first) and as_datetime(first).timestamp(), days)


def exotic(records):
    """Values at the edges of the rules, some in VSA's usual shape (decoded by msgspec on PostgreSQL)."""
    agents = records["agents.jsonl.gz"]
    agents[0]["AgentId"] = f"\t{agents[0]['AgentId']}\u00a0"  # whitespace other than spaces
    agents[1]["LastCheckInTime"] = "2024-02-27t23:30:00z"  # RFC 3339 allows lowercase
    agents[2]["LastCheckInTime"] = "2024-02-28T23:59:59.9999995Z"  # 7 digits: rounds into the next day
    agents[3]["FirstCheckIn"] = "2024-02-30T10:00:00Z"  # no such day
    agents[4]["LastCheckInTime"] = "2024-02-20 10:00Z"  # ISO 8601, not RFC 3339
    agents[5]["MachineGroupId"] = int(G_SRV)  # beyond 64 bits, as a JSON number
    agents[4]["Online"], agents[5]["Online"] = "busy", " 2 "  # unreadable: NULL, for the gate to report
    records[f"agents_in_view/{VIEW}.jsonl.gz"][0]["AgentId"] = f" {AGENT['a1']}\n"


def loaded_agents(engine):
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT snapshot_date, agent_id, agent_name, org_id, machine_group_id, online, last_checkin_time, "
            "first_checkin, days_since_checkin FROM vsa_agents ORDER BY agent_id")).all()


def rules_rows(landing):
    """The rows the load's rules make of the landing, record by record (SQLite's path)."""
    rows = (agent_row(D1, None, clean_agent(r)) for r in landing.records("agents.jsonl.gz"))
    return sorted(rows, key=lambda r: r[1])


@pytest.mark.parametrize("mutate", [awkward, exotic])
@pytest.mark.parametrize("reads", ["one read", "many small reads"])
def test_the_load_makes_the_rows_of_its_rules_on_both_engines(warehouse, tmp_path, monkeypatch, reads, mutate):
    reads_of_agents, through_rules = [], []  # on PostgreSQL: the agents file's reads, and those of unusual lines
    line_blocks, parse_lines = RawLanding.line_blocks, RawLanding.parse_lines
    monkeypatch.setattr(RawLanding, "line_blocks", lambda self, name: (
        (reads_of_agents.append(1) if name == "agents.jsonl.gz" else None, b)[1] for b in line_blocks(self, name)))
    monkeypatch.setattr(RawLanding, "parse_lines", lambda self, name, lines: (
        through_rules.append(name) if name == "agents.jsonl.gz" else None, parse_lines(self, name, lines))[1])
    if reads == "many small reads":  # lines cut across reads, a read decoded while the last is written
        monkeypatch.setattr(landing_module, "READ_SIZE", 256)
    landing = write_landing(tmp_path / "raw", D1, *DAYS[D1], mutate=mutate)
    result = load_snapshot(warehouse, landing)
    if warehouse.dialect.name == "postgresql":
        # A read holding an unusual line goes through the rules; small reads also decode reads
        # of usual lines straight into clean records, and both must make the rules' rows.
        assert through_rules and (len(through_rules) < len(reads_of_agents)) == (reads == "many small reads")
    loaded = loaded_agents(warehouse)
    assert [normal(r) for r in loaded] == [normal(r) for r in rules_rows(landing)]
    with warehouse.connect() as conn:
        members = sorted(conn.execute(text("SELECT view_id, agent_id FROM vsa_view_members")).all())
    assert result.agents == 6 and [tuple(m) for m in members] == [(VIEW, AGENT["a1"]), (VIEW, AGENT["a4"])]
    if mutate is exotic:
        by_id = {r[1]: r for r in loaded}
        assert set(by_id) == {AGENT[f"a{n}"] for n in range(1, 7)}  # the padded id trimmed
        assert as_datetime(by_id[AGENT["a2"]][6]) == datetime(2024, 2, 27, 23, 30, tzinfo=UTC)
        assert as_datetime(by_id[AGENT["a3"]][6]) == datetime(2024, 2, 29, tzinfo=UTC)
        assert by_id[AGENT["a3"]][8] == (D1 - date(2024, 2, 29)).days
        assert by_id[AGENT["a4"]][7] is None
        assert as_datetime(by_id[AGENT["a5"]][6]) == datetime(2024, 2, 20, 10, tzinfo=UTC)
        assert by_id[AGENT["a6"]][4] == G_SRV
        assert (by_id[AGENT["a5"]][5], by_id[AGENT["a6"]][5]) == (None, 2)
        return
    assert result.agents == 6 and [tuple(m) for m in members] == [(VIEW, AGENT["a1"]), (VIEW, AGENT["a4"])]
    days = {r[1]: r[8] for r in loaded}
    assert days[AGENT["a2"]] == (D1 - date(2024, 2, 27)).days  # the date as written, not in UTC
    assert G_SRV in {r[4] for r in loaded}


@pytest.mark.parametrize("bad", [True, 1.5], ids=["boolean", "fraction"])
def test_an_agent_id_that_is_no_id_refuses_the_landing_naming_the_file(warehouse, tmp_path, bad):
    """VSA sends ids as strings or integers; an id that is neither, anywhere in the file, refuses
    the landing on both engines with one line naming the file, and nothing of the date is written."""
    def break_one(records):
        records["agents.jsonl.gz"][3]["AgentId"] = bad

    landing = write_landing(tmp_path / "raw", D1, *DAYS[D1], mutate=break_one)
    with pytest.raises(LandingError) as info:
        load_snapshot(warehouse, landing)
    message = str(info.value)
    assert "\n" not in message and str(landing.path / "agents.jsonl.gz") in message and "id" in message
    assert loaded_agents(warehouse) == []


def test_a_line_that_is_not_json_refuses_the_landing_naming_the_file(warehouse, tmp_path):
    """A landing whose agents file holds a broken line (checksums written over it) is refused on
    both engines with one line naming the file, before anything of the date is written."""
    import gzip

    landing = write_landing(tmp_path / "raw", D1, *DAYS[D1])
    lines = gzip.decompress((landing.path / "agents.jsonl.gz").read_bytes()).splitlines()
    write_signed(landing, gzip.compress(b"\n".join([*lines[:3], b'{"AgentId": "1", "Online": ', *lines[3:]]) + b"\n"))
    assert_refused_naming_the_file(warehouse, landing)


@pytest.mark.parametrize("damage", ["truncated", "wrong checksum"])
def test_a_broken_gzip_file_refuses_the_landing_naming_the_file(warehouse, tmp_path, damage):
    """A landed file whose compressed data is cut short or fails gzip's own CRC (the manifest's
    checksums written over it) is refused on both engines with one line naming the file."""
    landing = write_landing(tmp_path / "raw", D1, *DAYS[D1])
    data = bytearray((landing.path / "agents.jsonl.gz").read_bytes())
    if damage == "truncated":
        del data[len(data) // 2:]
    else:
        data[-6] ^= 0xFF  # the CRC-32 of the decompressed data
    write_signed(landing, bytes(data))
    assert_refused_naming_the_file(warehouse, landing)


def write_signed(landing, data: bytes) -> None:
    """Write ``data`` as the landing's agents file and its checksum into the manifest, as a
    landing written that way would hold it (the load's checksum check cannot tell)."""
    import hashlib
    import json

    path = landing.path / "agents.jsonl.gz"
    path.write_bytes(data)
    manifest_path = landing.path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["agents.jsonl.gz"]["sha256"] = hashlib.sha256(data).hexdigest()
    manifest_path.write_text(json.dumps(manifest))


def assert_refused_naming_the_file(warehouse, landing) -> None:
    """The load refuses with one line naming the agents file, and nothing of the date is written."""
    with pytest.raises(LandingError) as info:
        load_snapshot(warehouse, landing)
    message = str(info.value)
    assert message.startswith(f"raw landing file {landing.path / 'agents.jsonl.gz'} cannot be read: ")
    assert "\n" not in message and loaded_agents(warehouse) == []


@pytest.mark.parametrize("value", ["03/02/2024 01:00:00", "/Date(1709341200000)/", 1709341200])
def test_an_unreadable_last_check_in_refuses_the_load_naming_the_file_and_agent(warehouse, tmp_path, value):
    """NULL means "never checked in", which the offline-days exclusion counts out: read as NULL, a
    VSA build writing another format would credit every such agent. The load refuses instead."""
    from agent_billing.sync.load import UnreadableCheckIn

    def other_format(records):
        records["agents.jsonl.gz"][1]["LastCheckInTime"] = value

    landing = write_landing(tmp_path / "raw", D1, *DAYS[D1], mutate=other_format)
    with pytest.raises(UnreadableCheckIn) as refused:
        load_snapshot(warehouse, landing)
    assert str(refused.value) == (
        f"agents.jsonl.gz: LastCheckInTime {value!r} of agent {AGENT['a2']} is not a timestamp agent-billing "
        "reads (ISO 8601, as VSA writes it): nothing was loaded")
    assert loaded_agents(warehouse) == []


@pytest.mark.parametrize("agent_id", [None, "  "], ids=["null", "blank"])
def test_a_view_member_without_an_id_refuses_the_load_naming_the_file(warehouse, tmp_path, agent_id):
    from agent_billing.sync.load import RefusedRecord

    def no_id(records):
        records[f"agents_in_view/{VIEW}.jsonl.gz"][0]["AgentId"] = agent_id

    landing = write_landing(tmp_path / "raw", D1, *DAYS[D1], mutate=no_id)
    with pytest.raises(RefusedRecord, match=rf"^agents_in_view/{VIEW}\.jsonl\.gz: a view member without AgentId: "
                       "nothing was loaded$"):
        load_snapshot(warehouse, landing)
    assert loaded_agents(warehouse) == []


@pytest.mark.parametrize("odd", ["\x00", "\ud800"], ids=["NUL", "lone surrogate"])
def test_a_name_no_database_stores_loads_with_a_replacement_character_on_both_engines(warehouse, tmp_path, odd):
    """A NUL (PostgreSQL's text refuses it) or a lone surrogate (no UTF-8 database takes it) in
    a name VSA sends would fail every night while VSA keeps sending it: it is stored as U+FFFD."""
    def mutate(records):
        records["agents.jsonl.gz"][0]["AgentName"] = f"pc{odd}x"
        records["orgs.jsonl.gz"][0]["OrgName"] = f"Contoso{odd}"
        records["machine_groups.jsonl.gz"][0]["MachineGroupName"] = f"root{odd}"
        records["views.jsonl.gz"][0]["ViewDefName"] = f"Billable{odd}"

    load_snapshot(warehouse, write_landing(tmp_path / "raw", D1, *DAYS[D1], mutate=mutate))
    with warehouse.connect() as conn:
        names = {conn.execute(text(f"SELECT {column} FROM {table} WHERE {column} LIKE :p"), {"p": f"{start}%"}).scalar_one()
                 for table, column, start in (("vsa_agents", "agent_name", "pc"), ("vsa_orgs", "org_name", "Contoso"),
                                              ("vsa_machine_groups", "machine_group_name", "root"),
                                              ("vsa_views", "view_name", "Billable"))}
    assert names == {"pc\ufffdx", "Contoso\ufffd", "root\ufffd", "Billable\ufffd"}
