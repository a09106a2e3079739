"""The load turns landed JSON lines into the same rows on both engines (PostgreSQL in SQL)."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import text

from agent_billing.sync import load
from agent_billing.sync.load import _agent_rows, load_snapshot
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
    agents[2]["LastCheckInTime"] = "not a time"
    agents[2]["FirstCheckIn"] = ""
    del agents[3]["Online"]
    agents[4]["LastCheckInTime"] = "2024-02-20T10:00:00"
    agents[4]["AgentName"] = 'quote" back\\slash, comma'
    records[f"agents_in_view/{VIEW}.jsonl.gz"][0]["AgentId"] = int(AGENT["a1"])


def normal(row):
    d, agent_id, name, org, group, online, last, first, days = row
    return (str(as_date(d)), agent_id, name, org, group, online,
            as_datetime(last) and as_datetime(last).timestamp(), as_datetime(first) and as_datetime(first).timestamp(), days)


@pytest.mark.parametrize("batches", ["one batch", "many small batches"])
def test_the_load_makes_the_python_path_s_rows_on_both_engines(warehouse, tmp_path, monkeypatch, batches):
    shapes = []  # on PostgreSQL: whether each batch of agents had VSA's usual shape (the plain typed read)
    slim_batches = load._slim_batches
    monkeypatch.setattr(load, "_slim_batches", lambda path, shape: (
        (shapes.append(c) if path.name == "agents.jsonl.gz" else None, (c, b))[1] for c, b in slim_batches(path, shape)))
    if batches == "many small batches":  # lines cut across reads, batches parsed while the next is read
        monkeypatch.setattr(load, "CHUNK", 256)
        monkeypatch.setattr(load, "BATCH", 2)
    landing = write_landing(tmp_path / "raw", D1, *DAYS[D1], mutate=awkward)
    result = load_snapshot(warehouse, landing)
    if warehouse.dialect.name == "postgresql":
        # One batch holds an awkward line, so the rules read it; small reads also take the plain
        # typed read for the reads of usual lines, and both must make the Python path's rows.
        assert False in shapes and (True in shapes) == (batches == "many small batches")
    with warehouse.connect() as conn:
        loaded = conn.execute(text(
            "SELECT snapshot_date, agent_id, agent_name, org_id, machine_group_id, online, last_checkin_time, "
            "first_checkin, days_since_checkin FROM vsa_agents ORDER BY agent_id")).all()
        members = sorted(conn.execute(text("SELECT view_id, agent_id FROM vsa_view_members")).all())
    expected = sorted(_agent_rows(landing, D1), key=lambda r: r[1])
    assert [normal(r) for r in loaded] == [normal(r) for r in expected]
    assert result.agents == 6 and [tuple(m) for m in members] == [(VIEW, AGENT["a1"]), (VIEW, AGENT["a4"])]
    days = {r[1]: r[8] for r in loaded}
    assert days[AGENT["a2"]] == (D1 - date(2024, 2, 27)).days  # the date as written, not in UTC
    assert G_SRV in {r[4] for r in loaded}
