"""Membership kept as validity intervals answers like a per-date copy, for any order of loads."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from agent_billing.sync.intervals import (
    AGENTS,
    SERVICE_AGENTS,
    forget_date,
    forget_merged,
    set_date,
)
from agent_billing.warehouse.staging import empty_date
from agent_billing.warehouse.values import as_date

DAY0 = date(2024, 3, 1)
AGENT_IDS = ("a1", "a2", "a3", "a4")
SERVICE_KEYS = [("S1", a) for a in AGENT_IDS] + [("S2", a) for a in AGENT_IDS[:2]]

versions = st.tuples(st.sampled_from([None, "x", "y"]), st.sampled_from(["o1", "o2"]), st.booleans())
agent_sets = st.dictionaries(st.sampled_from(AGENT_IDS), versions, max_size=4)
service_sets = st.sets(st.sampled_from(SERVICE_KEYS))
operations = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.integers(0, 7), agent_sets, service_sets),
        st.tuples(st.just("forget"), st.integers(0, 7), st.none(), st.none()),
    ),
    min_size=1, max_size=14,
)
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def load(conn, day, agents, members):
    """Stage a date (its agents, and the pairs a count would find) and merge it into the histories."""
    empty_date(conn, "vsa_agents", day)
    conn.execute(text("CREATE TEMPORARY TABLE IF NOT EXISTS counted (service_id TEXT, agent_id TEXT)"))
    conn.execute(text("DELETE FROM counted"))
    for agent_id, (name, org, never) in agents.items():
        conn.execute(
            text("INSERT INTO vsa_agents (snapshot_date, agent_id, agent_name, org_id, machine_group_id, online) "
                 "VALUES (:d, :a, :n, :o, 'g', :on)"),
            {"d": day, "a": agent_id, "n": name, "o": org, "on": 199 if never else 1},
        )
    for service_id, agent_id in members:
        conn.execute(text("INSERT INTO counted VALUES (:s, :a)"), {"s": service_id, "a": agent_id})
    set_date(conn, AGENTS, day,
             "SELECT agent_id, agent_name, org_id, machine_group_id, COALESCE(online, 0) = 199 AS never_checked_in "
             "FROM vsa_agents WHERE snapshot_date = :sd", {"sd": day})
    set_date(conn, SERVICE_AGENTS, day, "SELECT service_id, agent_id FROM counted")


def forget(conn, day):
    for history in (AGENTS, SERVICE_AGENTS):
        forget_date(conn, history, day)
    forget_merged(conn, day)


def at(conn, day):
    agents = {
        r[0]: (r[1], r[2], bool(r[3]))
        for r in conn.execute(text(
            "SELECT agent_id, agent_name, org_id, never_checked_in FROM vsa_agent_history "
            "WHERE valid_from <= :d AND (valid_to IS NULL OR valid_to > :d)"), {"d": day})
    }
    members = {tuple(r) for r in conn.execute(text(
        "SELECT service_id, agent_id FROM service_agent_history "
        "WHERE valid_from <= :d AND (valid_to IS NULL OR valid_to > :d)"), {"d": day})}
    return agents, members


def assert_canonical(conn, merged):
    """Runs start and end on merged dates, never overlap, and none could be joined to the next
    (the same key and attributes, ending where the next starts)."""
    for table, ids, attributes in (
        ("vsa_agent_history", "agent_id", ", agent_name, org_id, machine_group_id, never_checked_in"),
        ("service_agent_history", "service_id, agent_id", ""),
    ):
        rows = conn.execute(text(
            f"SELECT {ids}, valid_from, valid_to{attributes} FROM {table} ORDER BY {ids}, valid_from")).all()
        width = len(ids.split(","))
        for row in rows:
            assert as_date(row[width]) in merged and (row[width + 1] is None or as_date(row[width + 1]) in merged)
        for a, b in zip(rows, rows[1:], strict=False):
            if a[:width] == b[:width]:
                assert a[width + 1] is not None and as_date(a[width + 1]) <= as_date(b[width])
                touching = as_date(a[width + 1]) == as_date(b[width])
                assert not (touching and a[width + 2:] == b[width + 2:]), (table, a, b)


@PROPERTY
@given(operations)
def test_intervals_answer_like_a_copy_per_date_for_any_order_of_loads_reruns_and_discards(warehouse, ops):
    model: dict[date, tuple[dict, set]] = {}
    with warehouse.begin() as conn:
        for table in ("vsa_agent_history", "service_agent_history", "history_dates", "vsa_agents"):
            conn.execute(text(f"DELETE FROM {table}"))
        for kind, offset, agents, members in ops:
            day = DAY0 + timedelta(days=offset)
            if kind == "set":
                load(conn, day, agents, members)
                model[day] = ({a: v for a, v in agents.items()}, set(members))
            elif day in model:
                forget(conn, day)
                del model[day]
            for merged, (agents_then, members_then) in model.items():
                assert at(conn, merged) == (agents_then, members_then), merged
            assert_canonical(conn, set(model))


def test_a_quiet_night_writes_its_churn_not_its_snapshot(warehouse):
    many = {f"a{n:03}": ("name", "o1", False) for n in range(200)}
    with warehouse.begin() as conn:
        load(conn, DAY0, many, {("S1", a) for a in many})
        quiet = dict(many)
        del quiet["a000"]
        quiet["a999"] = ("name", "o1", False)
        quiet["a001"] = ("renamed", "o1", False)
        written = set_date(conn, AGENTS, DAY0 + timedelta(days=1),
                           "SELECT :a AS agent_id, 'x' AS agent_name, 'o1' AS org_id, 'g' AS machine_group_id, "
                           "1 = 0 AS never_checked_in", {"a": "zzz"})
        assert written > 0  # sanity: a full change writes
        forget(conn, DAY0 + timedelta(days=1))
        load(conn, DAY0 + timedelta(days=1), quiet, {("S1", a) for a in quiet})
        total = conn.execute(text("SELECT COUNT(*) FROM vsa_agent_history")).scalar()
    assert total == 200 + 2  # a001's second version and a999; a000 and a001's first run closed
