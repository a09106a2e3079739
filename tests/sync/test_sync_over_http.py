"""The whole nightly sync against the VSA simulator over real HTTP, checked against its world."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import text

from agent_billing.contracts import apply_contracts
from agent_billing.settings import Settings
from agent_billing.sync.landing import RawLanding
from agent_billing.sync.pipeline import sync_date
from agent_billing.sync.units_now import get_units_now
from agent_billing.vsa.client import VsaClient
from agent_billing.wording import units_text
from vsa_simulator.generated import GeneratedScenario
from vsa_simulator.testing import run_simulator

START = date(2024, 2, 1)
DAYS = [START + timedelta(days=n) for n in range(3)]


def night(day: date) -> datetime:
    return datetime.combine(day, time(2), tzinfo=UTC)


def truth(state, org_id: str, groups: set[str] | None = None, members: set[str] | None = None) -> int:
    records = (state.agents.record(h) for h in state.agents.handles)
    return sum(
        1 for r in records
        if r["OrgId"] == org_id
        and (groups is None or r["MachineGroupId"] in groups)
        and (members is None or r["AgentId"] in members)
    )


def subtree(state, root: str) -> set[str]:
    groups = [state.groups.record(h) for h in state.groups.handles]
    found, todo = set(), [root]
    while todo:
        g = todo.pop()
        found.add(g)
        todo += [x["MachineGroupId"] for x in groups if x["ParentMachineGroupId"] == g]
    return found


@pytest.fixture
def world():
    return GeneratedScenario(seed=11, orgs=4, agents=600, start=date(2024, 1, 1), daily_churn=0.02)


def test_nightly_sync_over_http_matches_the_world(warehouse, tmp_path, world, monkeypatch):
    state = world.state(START)
    org = state.orgs.record(state.orgs.handles[0])["OrgId"]
    root = next(
        g for g in (state.groups.record(h) for h in state.groups.handles)
        if g["OrgId"] == org and g["ParentMachineGroupId"] is None
    )["MachineGroupId"]
    view = state.views.record(state.views.handles[0])["ViewDefId"]
    apply_contracts(warehouse, {"accounts": [{
        "account_id": "A1", "name": "Org one", "vsa_org_id": org,
        "contracts": [{"contract_id": "C1", "currency": "EUR", "start_date": "2024-01-01", "services": [
            {"service_id": "ORG", "name": "All", "unit_price": "5", "units_source": "rmm_agent_count",
             "start_date": "2024-01-01"},
            {"service_id": "TREE", "name": "Root tree", "unit_price": "5", "units_source": "rmm_agent_count",
             "vsa_machine_group_id": root, "start_date": "2024-01-01"},
            {"service_id": "VIEW", "name": "In view", "unit_price": "5", "units_source": "rmm_agent_count",
             "vsa_view_id": view, "start_date": "2024-01-01"},
        ]}],
    }]})
    settings = Settings(raw_path=tmp_path / "raw")
    with run_simulator(world, date=START) as vsa:
        monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", vsa.connection_json())
        for day in DAYS:
            vsa.set_date(day)
            steps = sync_date(warehouse, settings, day, VsaClient.from_env, now=night(day))
            assert [s.status for s in steps] == ["landed", "loaded", "validated", "counted", "complete"]
        calls = vsa.count()
        manifest = RawLanding(settings.raw_path, DAYS[-1]).manifest()["files"]["agents.jsonl.gz"]
        assert manifest["records"] == manifest["total_records"] == len(world.state(DAYS[-1]).agents.handles)

        with warehouse.connect() as conn:
            counts = {
                (sid, str(d)[:10]): n
                for sid, d, n in conn.execute(text("SELECT service_id, snapshot_date, units FROM service_unit_counts"))
            }
            deltas = dict(conn.execute(text("SELECT service_id, SUM(delta) FROM unit_changes GROUP BY service_id")).all())
        for day in DAYS:
            s = world.state(day)
            members = {s.view_members(view).record(h)["AgentId"] for h in s.view_members(view).handles}
            assert counts[("ORG", str(day))] == truth(s, org)
            assert counts[("TREE", str(day))] == truth(s, org, subtree(s, root))
            assert counts[("VIEW", str(day))] == truth(s, org, members=members)
        for sid in ("ORG", "TREE", "VIEW"):  # the changes add up to the movement of the units
            assert deltas.get(sid, 0) == counts[(sid, str(DAYS[-1]))] - counts[(sid, str(DAYS[0]))]

        # A re-run reprocesses the landing: VSA is not called and the rows do not change.
        sync_date(warehouse, settings, DAYS[1], VsaClient.from_env, now=night(DAYS[-1]))
        assert vsa.count() == calls

        # Get Units Now on the last day agrees with the nightly count of that day, also when the
        # group tree is counted in several batches (as a large tree is, to keep URLs short).
        monkeypatch.setattr("agent_billing.sync.units_now.GROUPS_PER_QUERY", 2)
        result = get_units_now(
            warehouse, VsaClient.from_env(), "TREE", tz=settings.tz,
            now=night(DAYS[-1]) + timedelta(hours=10),
        )
        assert result.units_after == counts[("TREE", str(DAYS[-1]))]
        assert not result.change_recorded


def org_two_service(warehouse, world, name: str, **scope) -> str:
    """Contract C2 (mail to it@org2.example) with service ORG2 counting the world's second org;
    returns the org's id."""
    state = world.state(START)
    org = state.orgs.record(state.orgs.handles[1])["OrgId"]
    apply_contracts(warehouse, {"accounts": [{
        "account_id": "A2", "name": "Org two", "vsa_org_id": org,
        "contracts": [{"contract_id": "C2", "currency": "USD", "start_date": "2024-01-01",
                       "notify_emails": ["it@org2.example"], "services": [
            {"service_id": "ORG2", "name": name, "unit_price": "5", "units_source": "rmm_agent_count",
             "start_date": "2024-01-01", **scope},
        ]}],
    }]})
    return org


def test_get_units_now_records_a_change_effective_today(warehouse, tmp_path, world, monkeypatch):
    org = org_two_service(warehouse, world, "All but never seen", exclude_never_checked_in=True)
    settings = Settings(raw_path=tmp_path / "raw")
    later = START + timedelta(days=20)
    with run_simulator(world, date=START) as vsa:
        monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", vsa.connection_json())
        sync_date(warehouse, settings, START, VsaClient.from_env, now=night(START))
        vsa.set_date(later)  # twenty days of churn later, an account manager presses the button
        # the id as pasted into the DAG's form, with spaces around it: trimmed as the file's ids are
        result = get_units_now(warehouse, VsaClient.from_env(), " ORG2 ", tz=settings.tz, now=night(later))
        assert result.service_id == "ORG2"
    s = world.state(later)
    expected = sum(
        1 for r in (s.agents.record(h) for h in s.agents.handles) if r["OrgId"] == org and r["Online"] != 199
    )
    assert result.units_after == expected
    with warehouse.connect() as conn:
        change = conn.execute(text("SELECT * FROM unit_changes")).mappings().all()
        units = conn.execute(text("SELECT units FROM services WHERE service_id = 'ORG2'")).scalar()
        mail = conn.execute(text("SELECT recipients, body FROM notification_outbox")).all()
    assert result.change_recorded and expected != result.units_before  # twenty days of churn
    assert len(change) == 1 and change[0]["source"] == "get_units_now"
    assert str(change[0]["effective_date"])[:10] == str(later)
    assert change[0]["delta"] == expected - result.units_before
    assert units == expected
    [(recipients, body)] = mail  # the account manager hears of it
    assert recipients == "it@org2.example"
    assert f"All but never seen (ORG2): {result.units_before} → {units_text(expected)}, effective {later}" in body


def test_get_units_now_refuses_a_service_outside_its_dates_or_its_contract_s(warehouse, world, monkeypatch):
    """A service open in a contract that ended was pressed: its change was mailed ("prorated on
    the next invoice") and never billed, since the night counts neither."""
    from agent_billing.errors import UserError

    state = world.state(START)
    org = state.orgs.record(state.orgs.handles[0])["OrgId"]
    counted = {"unit_price": "5", "units_source": "rmm_agent_count", "start_date": "2024-01-01"}
    apply_contracts(warehouse, {"accounts": [{
        "account_id": "A1", "name": "Org one", "vsa_org_id": org,
        "contracts": [
            {"contract_id": "C1", "currency": "USD", "start_date": "2024-01-01", "services": [
                {"service_id": "ENDED", "name": "Ended", **counted, "end_date": "2024-01-31"}]},
            {"contract_id": "C2", "currency": "USD", "start_date": "2024-01-01", "end_date": "2024-01-20",
             "services": [{"service_id": "OPEN", "name": "Open in an ended contract", **counted}]},
        ],
    }]})
    with run_simulator(world, date=START) as vsa:
        monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", vsa.connection_json())
        with pytest.raises(UserError, match="service ENDED is not active on 2024-02-01 .*2024-01-31"):
            get_units_now(warehouse, VsaClient.from_env(), "ENDED", tz=Settings().tz, now=night(START))
        with pytest.raises(UserError, match=r"service OPEN is not active on 2024-02-01 \(it and its contract run "
                           r"2024-01-01 to 2024-01-20\)"):
            get_units_now(warehouse, VsaClient.from_env(), "OPEN", tz=Settings().tz, now=night(START))
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM units_now_readings")).scalar() == 0
        assert conn.execute(text("SELECT COUNT(*) FROM notification_outbox")).scalar() == 0


def org_one_service(warehouse, world) -> None:
    """Service ORG1 counts the whole of the world's first org (contract C1, from 2024)."""
    state = world.state(START)
    org = state.orgs.record(state.orgs.handles[0])["OrgId"]
    apply_contracts(warehouse, {"accounts": [{
        "account_id": "A1", "name": "Org one", "vsa_org_id": org,
        "contracts": [{"contract_id": "C1", "currency": "USD", "start_date": "2024-01-01",
                       "notify_emails": ["it@org1.example"], "services": [
            {"service_id": "ORG1", "name": "Org", "unit_price": "5", "units_source": "rmm_agent_count",
             "start_date": "2024-01-01"}]}],
    }]})


def test_get_units_now_waits_for_a_quarantined_night_to_be_decided(warehouse, world, monkeypatch):
    """The night of yesterday is quarantined (an org's agents vanished in VSA): a press reads the
    same VSA and recorded the whole-service credit the quarantine holds back, mailed it, and
    kept it after the night was discarded. Refused, naming the night and what to do."""
    from agent_billing.errors import UserError

    org_one_service(warehouse, world)
    held = START - timedelta(days=2)
    with warehouse.begin() as conn:  # the night after it a gap (VSA down, re-run late): no good night since
        conn.execute(text("INSERT INTO sync_runs (snapshot_date, status) VALUES (:d, 'quarantined'), (:g, 'gap')"),
                     {"d": held, "g": START - timedelta(days=1)})
    with run_simulator(world, date=START) as vsa:
        monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", vsa.connection_json())
        with pytest.raises(UserError, match=rf"the night of {held} is quarantined .*release or discard {held} first"):
            get_units_now(warehouse, VsaClient.from_env(), "ORG1", tz=Settings().tz, now=night(START))
        with warehouse.begin() as conn:  # discarded: the drop it showed was judged wrong, still no good night
            conn.execute(text("UPDATE sync_runs SET status = 'discarded' WHERE snapshot_date = :d"), {"d": held})
        with pytest.raises(UserError, match=rf"the night of {held} was discarded .*press again after the next "
                           "complete night"):
            get_units_now(warehouse, VsaClient.from_env(), "ORG1", tz=Settings().tz, now=night(START))
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM units_now_readings")).scalar() == 0
        assert conn.execute(text("SELECT COUNT(*) FROM notification_outbox")).scalar() == 0


def test_a_night_quarantined_while_a_press_counts_stops_the_press(warehouse, world, monkeypatch):
    """The press checks for a held night before it counts in VSA, which takes minutes with
    exclusions; a night's sync that quarantines meanwhile read the same VSA. The press then
    recorded the drop the quarantine holds back (kept after a discard, billed as a credit).
    Checked again where the reading is written: refused, nothing written."""
    from agent_billing.errors import UserError
    from agent_billing.sync import units_now

    org_one_service(warehouse, world)
    counted = units_now.count_scope

    def count_while_the_night_is_judged(engine, client, service, today):
        units = counted(engine, client, service, today)  # the real count, over HTTP
        with engine.begin() as conn:  # meanwhile today's night is quarantined
            conn.execute(text("INSERT INTO sync_runs (snapshot_date, status) VALUES (:d, 'quarantined')"),
                         {"d": today})
        return units

    monkeypatch.setattr(units_now, "count_scope", count_while_the_night_is_judged)
    with run_simulator(world, date=START) as vsa:
        monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", vsa.connection_json())
        with pytest.raises(UserError, match=rf"the night of {START} is quarantined .*release or discard {START} first"):
            units_now.get_units_now(warehouse, VsaClient.from_env(), "ORG1", tz=Settings().tz, now=night(START))
    with warehouse.connect() as conn:
        for table in ("units_now_readings", "unit_changes", "notification_outbox"):
            assert conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar() == 0, table


def test_get_units_now_excludes_the_agents_the_night_excludes(warehouse, tmp_path, world, monkeypatch):
    """The exclusions are one rule for the night and for the button. Pressed late on the night's
    date in the billing timezone (already the next day in UTC), every service's reading equals
    that night's count, at each threshold the agents' last check-ins fall on."""
    day = START + timedelta(days=20)
    org = world.state(day).orgs.record(world.state(day).orgs.handles[0])["OrgId"]
    thresholds = [1, 2, 3, 10]
    services = [
        {"service_id": "NEVER", "exclude_never_checked_in": True},
        *({"service_id": f"OFF{k}", "exclude_offline_days": k} for k in thresholds),
        {"service_id": "BOTH", "exclude_never_checked_in": True, "exclude_offline_days": 1},
    ]
    apply_contracts(warehouse, {"accounts": [{
        "account_id": "A1", "name": "Org one", "vsa_org_id": org,
        "contracts": [{"contract_id": "C1", "currency": "EUR", "start_date": "2024-01-01", "services": [
            {"name": s["service_id"], "unit_price": "5", "units_source": "rmm_agent_count",
             "start_date": "2024-01-01", **s} for s in services
        ]}],
    }]})
    settings = Settings(raw_path=tmp_path / "raw", timezone="America/New_York")
    pressed = datetime.combine(day, time(23, 30), tzinfo=settings.tz).astimezone(UTC)  # as the clock reads it
    assert pressed.date() == day + timedelta(days=1)
    with run_simulator(world, date=day) as vsa:
        monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", vsa.connection_json())
        sync_date(warehouse, settings, day, VsaClient.from_env, now=pressed)
        with warehouse.connect() as conn:
            night_counts = dict(conn.execute(
                text("SELECT service_id, units FROM service_unit_counts WHERE snapshot_date = :d"), {"d": day}
            ).all())
            checkins = dict(conn.execute(text(
                "SELECT days_since_checkin, COUNT(*) FROM vsa_agents WHERE snapshot_date = :d AND org_id = :o "
                "GROUP BY days_since_checkin"
            ), {"d": day, "o": org}).all())
        readings = {
            s["service_id"]: get_units_now(warehouse, VsaClient.from_env(), s["service_id"], tz=settings.tz, now=pressed)
            for s in services
        }
    # The thresholds fall on agents: some are seen exactly k days before, some never.
    assert all(checkins.get(k) for k in thresholds[:3]) and checkins.get(None), checkins
    assert len({night_counts[f"OFF{k}"] for k in thresholds[:3]}) == 3, night_counts
    assert {sid: r.units_after for sid, r in readings.items()} == night_counts
    assert not any(r.change_recorded for r in readings.values())


def _other_org(state, org: str) -> str:
    return next(r["OrgId"] for r in (state.orgs.record(h) for h in state.orgs.handles) if r["OrgId"] != org)


def _root_of(state, org: str) -> str:
    return next(
        g["MachineGroupId"] for g in (state.groups.record(h) for h in state.groups.handles)
        if g["OrgId"] == org and g["ParentMachineGroupId"] is None
    )


@pytest.mark.parametrize(("scope", "missing"), [
    ({"vsa_org_id": "987654321987654321"}, "org 987654321987654321"),
    ({"vsa_machine_group_id": "999999999999"}, "machine group 999999999999 of org"),
    ({"vsa_machine_group_id": "999999999999", "include_subgroups": False}, "machine group 999999999999 of org"),
    ({"vsa_machine_group_id": "other org's root"}, "machine group"),
    ({"vsa_machine_group_id": "other org's root", "include_subgroups": False}, "machine group"),
    ({"vsa_view_id": "424242"}, "view 424242"),
])
def test_get_units_now_refuses_a_scope_that_points_at_nothing(warehouse, world, monkeypatch, scope, missing):
    """A scope VSA does not have now (a deleted group, a group moved to another org, an org or
    view outside the API user's scope) would count 0 agents: a credit of the whole service. The
    button refuses it, naming the service and the missing piece, and records nothing."""
    from agent_billing.sync.units_now import ScopeMissing

    state = world.state(START)
    org = state.orgs.record(state.orgs.handles[0])["OrgId"]
    scope = dict(scope)
    if scope.get("vsa_machine_group_id") == "other org's root":
        scope["vsa_machine_group_id"] = _root_of(state, _other_org(state, org))
    apply_contracts(warehouse, {"accounts": [{
        "account_id": "A1", "name": "Org one", "vsa_org_id": scope.pop("vsa_org_id", org),
        "contracts": [{"contract_id": "C1", "currency": "USD", "start_date": "2024-01-01", "services": [
            {"service_id": "GONE", "name": "Gone", "unit_price": "5", "units_source": "rmm_agent_count",
             "start_date": "2024-01-01", **scope},
        ]}],
    }]})
    units = "SELECT units FROM services WHERE service_id = 'GONE'"
    with warehouse.connect() as conn:
        before = conn.execute(text(units)).scalar()
    with run_simulator(world, date=START) as vsa:
        monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", vsa.connection_json())
        with pytest.raises(ScopeMissing, match=f"service GONE: its {missing}.* is not in VSA now") as raised:
            get_units_now(warehouse, VsaClient.from_env(), "GONE", tz=Settings().tz, now=night(START))
    assert "\n" not in str(raised.value)
    with warehouse.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM units_now_readings")).scalar() == 0
        assert conn.execute(text("SELECT COUNT(*) FROM unit_changes")).scalar() == 0
        assert conn.execute(text(units)).scalar() == before


def outbox(engine) -> list[tuple[str, str, bool]]:
    with engine.connect() as conn:
        return [(m, body, sent is not None) for m, body, sent in conn.execute(
            text("SELECT message_id, body, sent_at FROM notification_outbox ORDER BY created_at, message_id"))]


def test_a_second_press_the_same_day_corrects_what_the_first_press_told(warehouse, tmp_path, world, monkeypatch,
                                                                        local_smtp):
    """The day's last press wins (one change per service and day): the mail follows it. Unsent,
    the first press's mail is replaced or withdrawn; sent, a correction follows."""
    from agent_billing.sync.notify import deliver_outbox

    org = org_two_service(warehouse, world, "All")
    settings = Settings(raw_path=tmp_path / "raw")
    later = START + timedelta(days=20)
    head = f"units-now:ORG2:{later}"

    def press(world_date: date, hour: int):
        vsa.set_date(world_date)
        return get_units_now(warehouse, VsaClient.from_env(), "ORG2", tz=settings.tz,
                             now=datetime.combine(later, time(hour), tzinfo=UTC))

    with run_simulator(world, date=START) as vsa:
        monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", vsa.connection_json())
        sync_date(warehouse, settings, START, VsaClient.from_env, now=night(START))
        night_units = truth(world.state(START), org)
        first = press(later, 10)
        assert first.change_recorded and (first.units_before, first.units_after) == (night_units, truth(world.state(later), org))
        assert [m for m, _, _ in outbox(warehouse)] == [head]

        undone = press(START, 11)  # the agents are back as the night counted them
        assert not undone.change_recorded and undone.replaced == (night_units, first.units_after)
        assert outbox(warehouse) == []  # the unsent "now N" is withdrawn: it is no longer true

        again = press(later, 12)
        assert again.change_recorded and again.units_before == night_units  # the change recorded, not the last press
        assert deliver_outbox(warehouse, local_smtp.connection, settings.notify_from).sent == 1

        undone = press(START, 13)
        [(_, _, sent), (correction, body, unsent)] = outbox(warehouse)
        assert sent and not unsent and correction.startswith(f"{head}:correction:")
        assert "a later press that day, or a night processed since, replaced it" in body and "There is no longer a Get Units Now change of ORG2 on that date" in body

        assert press(START, 14).units_after == night_units  # still no change: nothing new to tell
        assert [m for m, _, _ in outbox(warehouse)] == [head, correction]

        other = next(d for d in (START + timedelta(days=n) for n in range(1, 20))
                     if truth(world.state(d), org) not in (night_units, first.units_after))
        third = press(other, 15)
        [(_, _, _), (newer, body, _)] = outbox(warehouse)  # the unsent correction is replaced
        assert newer != correction
        assert f"(ORG2): {night_units} → {units_text(third.units_after)}, effective {later}" in body


def test_the_quarantine_drill_a_hidden_org_quarantines_the_next_night(warehouse, tmp_path, world, monkeypatch):
    """The runbook's drill against the simulator: a night synced, an org's agents hidden in VSA
    (POST /_sim/hidden-orgs), the next night is quarantined naming the org by its account; shown
    again, the night after is complete."""
    state = world.state(START)
    org = state.orgs.record(state.orgs.handles[0])
    apply_contracts(warehouse, {"accounts": [{
        "account_id": "A1", "name": "Org one", "vsa_org_id": org["OrgId"],
        "contracts": [{"contract_id": "C1", "currency": "EUR", "start_date": "2024-01-01", "services": [
            {"service_id": "ORG", "name": "All", "unit_price": "5", "units_source": "rmm_agent_count",
             "start_date": "2024-01-01"}]}],
    }]})
    settings = Settings(raw_path=tmp_path / "raw")
    with run_simulator(world, date=START) as vsa:
        monkeypatch.setenv("AIRFLOW_CONN_VSA_DEFAULT", vsa.connection_json())
        statuses = {}
        for day in DAYS:
            vsa.set_date(day)
            vsa.set_hidden_orgs([org["OrgRef"]] if day == DAYS[1] else [])
            statuses[day] = sync_date(warehouse, settings, day, VsaClient.from_env, now=night(day))[-1]
    assert [statuses[d].status for d in DAYS] == ["complete", "quarantined", "complete"]
    assert f"org {org['OrgId']} (Org one): {truth(state, org['OrgId'])} → 0 agents" in \
        statuses[DAYS[1]].detail["message"]
