"""Scopes that point at nothing: listed by service with the missing id and the org's name,
warned by ``contracts apply`` (refused with --strict); a scope that counts 0 is only shown."""

from __future__ import annotations

import re
from datetime import date

import sqlalchemy as sa

from agent_billing.cli import main
from agent_billing.contracts import apply_contracts
from agent_billing.sync.scopes import latest_complete_snapshot, scope_problems, zero_count_services

SNAPSHOT = date(2024, 6, 1)


def _svc(service_id: str, scope: str = "", start: str = "2024-01-01", end: str = "null") -> str:
    return (f"          - {{service_id: {service_id}, name: {service_id}, unit_price: \"1\", "
            f"units_source: rmm_agent_count, {scope}start_date: {start}, end_date: {end}}}\n")


CONTRACTS = (
    "accounts:\n"
    "  - account_id: ACME\n    name: Acme\n    vsa_org_id: \"10\"\n    contracts:\n"
    "      - contract_id: C-ACME\n        currency: USD\n        start_date: 2024-01-01\n        services:\n"
    + _svc("S-OK", 'vsa_machine_group_id: "100", ')
    + _svc("S-NOGROUP", 'vsa_machine_group_id: "999", ')
    + _svc("S-OTHERGROUP", 'vsa_machine_group_id: "200", ')
    + _svc("S-NOVIEW", 'vsa_view_id: "77", ')
    + _svc("S-VIEW", 'vsa_view_id: "55", ')
    + _svc("S-ZERO", 'vsa_machine_group_id: "101", ')
    + _svc("S-ENDED", 'vsa_machine_group_id: "999", ', end="2024-01-31")
    + _svc("S-LATER", 'vsa_machine_group_id: "999", ', start="2024-09-01")
    + "          - {service_id: S-MANUAL, name: Manual, unit_price: \"1\", units_source: manual, units: 2,"
      " start_date: 2024-01-01}\n"
    "  - account_id: GONE\n    name: Gone Inc\n    vsa_org_id: \"20\"\n    contracts:\n"
    "      - contract_id: C-GONE\n        currency: USD\n        start_date: 2024-01-01\n        services:\n"
    + _svc("S-GONE")
    + _svc("S-GONE-G", 'vsa_machine_group_id: "300", ')
)

EXPECTED = {
    ("S-GONE", "org", "20", False, None),
    ("S-GONE-G", "org", "20", False, None),
    ("S-GONE-G", "machine_group", "300", False, None),
    ("S-NOGROUP", "machine_group", "999", True, "Acme Org"),
    ("S-OTHERGROUP", "machine_group", "200", True, "Acme Org"),
    ("S-NOVIEW", "view", "77", True, "Acme Org"),
}


def load_snapshot(engine, *, counts: bool = True) -> None:
    """A complete snapshot of 2024-06-01: orgs 10 and 30, groups 100/101 (org 10), 200 (org 30), view 55."""
    d = {"d": SNAPSHOT}
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO sync_runs (snapshot_date, status) VALUES (:d, 'complete')"), d)
        conn.execute(sa.text("INSERT INTO sync_runs (snapshot_date, status) VALUES (:n, 'failed')"),
                     {"n": date(2024, 6, 2)})
        for org_id, name in (("10", "Acme Org"), ("30", "Other Org")):
            conn.execute(sa.text("INSERT INTO vsa_orgs (snapshot_date, org_id, org_name) VALUES (:d, :o, :n)"),
                         {**d, "o": org_id, "n": name})
        for group_id, org_id in (("100", "10"), ("101", "10"), ("200", "30")):
            conn.execute(sa.text("INSERT INTO vsa_machine_groups (snapshot_date, machine_group_id, org_id) "
                                 "VALUES (:d, :g, :o)"), {**d, "g": group_id, "o": org_id})
        conn.execute(sa.text("INSERT INTO vsa_views (snapshot_date, view_id, view_name) VALUES (:d, '55', 'Servers')"), d)
        if counts:
            for service_id, units in (("S-OK", 3), ("S-ZERO", 0), ("S-NOGROUP", 0), ("S-VIEW", 1)):
                conn.execute(sa.text("INSERT INTO service_unit_counts (service_id, snapshot_date, units) "
                                     "VALUES (:s, :d, :u)"), {**d, "s": service_id, "u": units})


def contents(engine) -> dict[str, list[str]]:
    with engine.connect() as conn:
        return {
            table: sorted(repr(tuple(row)) for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')))
            for table in sorted(sa.inspect(conn).get_table_names())
        }


def test_scope_problems_name_service_missing_id_and_org(warehouse, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(CONTRACTS)
    apply_contracts(warehouse, path)
    load_snapshot(warehouse)
    with warehouse.connect() as conn:
        assert latest_complete_snapshot(conn) == SNAPSHOT
        problems = scope_problems(conn, SNAPSHOT)
        later = scope_problems(conn, SNAPSHOT, active_until=date.max)
        zeros = zero_count_services(conn, SNAPSHOT)
    assert {(p.service_id, p.missing, p.missing_id, p.org_exists, p.org_name) for p in problems} == EXPECTED
    assert [p.service_id for p in problems] == sorted(p.service_id for p in problems)
    assert {(p.service_id, p.missing_id) for p in later} - {(p.service_id, p.missing_id) for p in problems} == {
        ("S-LATER", "999")}
    messages = {p.message() for p in problems}
    assert "service S-NOGROUP: machine group 999 does not exist in org 10 (Acme Org) in the VSA snapshot of 2024-06-01" in messages
    assert "service S-GONE: VSA org 20 does not exist in the VSA snapshot of 2024-06-01" in messages
    assert ("service S-GONE-G: machine group 300 does not exist in org 20 (the org itself is missing too) "
            "in the VSA snapshot of 2024-06-01") in messages
    assert "service S-NOVIEW: view 77 does not exist for org 10 (Acme Org) in the VSA snapshot of 2024-06-01" in messages
    assert [(z.service_id, z.org_id, z.org_name) for z in zeros] == [("S-ZERO", "10", "Acme Org")]
    assert zeros[0].message() == "service S-ZERO: 0 agents in its scope on 2024-06-01 (org 10, Acme Org)"


def test_apply_without_a_snapshot_says_scopes_were_not_checked(warehouse, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(CONTRACTS)
    assert main(["contracts", "apply", str(path)]) == 0
    err = capsys.readouterr().err
    assert "note: no complete VSA snapshot yet; scopes not checked" in err


def scope_lines(err: str) -> list[str]:
    """The stderr lines about scopes (services starting before June are also warned of as billed
    from their start: test_back_billing_is_warned_of_once; and as active on the night synced
    before the file was applied: tests/sync/test_contract_changes_on_synced_nights.py)."""
    return [line for line in err.strip().splitlines()
            if "first billing run" not in line and "synced night(s) that did not count it" not in line]


def test_back_billing_is_warned_of_once(warehouse, tmp_path, capsys):
    """A service added to start months before the first night synced is billed from its start,
    a counted one at the units of its first count: apply says so once, naming the service and
    line."""
    load_snapshot(warehouse, counts=False)
    path = tmp_path / "c.yaml"
    path.write_text(CONTRACTS)
    assert main(["contracts", "apply", str(path)]) == 0
    warnings = [line.removeprefix("agent-billing contracts apply: warning: ")
                for line in capsys.readouterr().err.splitlines() if "first billing run" in line]
    manual, warned = warnings
    assert manual.startswith("service S-MANUAL (line ") and "at its units in this file" in manual, manual
    warned = warned.removeprefix("services ")
    # S-LATER starts after June: not warned of; the nine counted services starting together are
    # one warning, naming five
    named, rest = warned.split(" and ", 1)
    assert rest.startswith("4 more start ") and "their first billing run" in rest, warned
    assert {x.split(" (line")[0] for x in named.split(", ")} < {
        "S-OK", "S-NOGROUP", "S-OTHERGROUP", "S-NOVIEW", "S-VIEW", "S-ZERO", "S-ENDED", "S-GONE", "S-GONE-G"}
    assert len(named.split(", ")) == 5
    assert main(["contracts", "apply", str(path)]) == 0  # nothing added or moved: nothing to warn of
    assert "first billing run" not in capsys.readouterr().err
    path.write_text(CONTRACTS.replace(_svc("S-LATER", 'vsa_machine_group_id: "999", ', start="2024-09-01"),
                                      _svc("S-LATER", 'vsa_machine_group_id: "999", ', start="2024-02-01")))
    assert main(["contracts", "apply", str(path)]) == 0
    [line] = [line for line in capsys.readouterr().err.splitlines() if "first billing run" in line]
    assert line.startswith("agent-billing contracts apply: warning: service S-LATER (line ")
    assert "starts 2024-02-01, before the first night synced (2024-06): its first billing run bills every month from 2024-02" in line


def test_apply_warns_by_service_and_strict_refuses_and_changes_nothing(warehouse, tmp_path, capsys, monkeypatch):
    (tmp_path / "raw").mkdir()  # the raw folder is there, without the night's landing
    monkeypatch.setenv("AGENT_BILLING_RAW_PATH", str(tmp_path / "raw"))
    path = tmp_path / "c.yaml"
    path.write_text(CONTRACTS)
    load_snapshot(warehouse, counts=False)
    before = contents(warehouse)
    for preview in ([], ["--plan"], ["--check"]):
        assert main(["contracts", "apply", str(path), "--strict", *preview]) == 2, preview
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert contents(warehouse) == before
    assert "service S-NOGROUP: machine group 999 does not exist in org 10 (Acme Org)" in err
    assert len(scope_lines(err)) == 7  # six services with a missing piece, S-GONE-G twice

    assert main(["contracts", "apply", str(path)]) == 0
    err = capsys.readouterr().err
    # the night was loaded without a landing (load_snapshot): a re-run cannot count it
    assert re.search(r"^agent-billing contracts apply: warning: service S-OK \(line \d+\) is now active on 1 synced "
                     r"night\(s\) that did not count it \(2024-06-01\); all of them cannot be "
                     r"recounted \(2024-06-01: their landing is gone\)", err, re.M), err
    err = scope_lines(err)
    warnings = [line for line in err if line.startswith("agent-billing contracts apply: warning: service ")]
    assert len(warnings) == 7 and len(err) == 7
    assert "agent-billing contracts apply: warning: service S-LATER: machine group 999 does not exist in org 10" \
        " (Acme Org) in the VSA snapshot of 2024-06-01" in err
    with warehouse.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM services")).scalar() == 11
