"""Get Units Now readings and nightly snapshots form one unit history: no change counted twice."""

from __future__ import annotations

from datetime import UTC, datetime, time

from sqlalchemy import text

from agent_billing.billing import store
from agent_billing.billing.run import plan_contract
from agent_billing.sync.changes import record_reading
from agent_billing.sync.pipeline import count_step, diff_step, load_step

from .conftest import DAYS, write_landing

D1, D2, _ = sorted(DAYS)


def press(engine, settings, service_id, day, hour, units):
    """What get_units_now records after counting the scope in VSA (covered over HTTP elsewhere)."""
    with engine.begin() as conn:
        record_reading(conn, settings.tz, service_id, datetime.combine(day, time(hour), tzinfo=UTC), units)


def sync(engine, settings, day, *, diff=True):
    write_landing(settings.raw_path, day, *DAYS[day])
    load_step(engine, settings, day)
    count_step(engine, settings, day)
    if diff:
        diff_step(engine, settings, day)


def ws_changes(engine):
    with engine.connect() as conn:
        return [
            (str(d)[:10], before, after, source)
            for d, before, after, source in conn.execute(
                text(
                    "SELECT effective_date, units_before, units_after, source FROM unit_changes "
                    "WHERE service_id = 'S-WS' ORDER BY effective_date, detected_at"
                )
            )
        ]


def test_press_between_snapshots_then_the_next_snapshot_agrees(contoso, settings):
    sync(contoso, settings, D1)                    # S-WS counts 3
    press(contoso, settings, "S-WS", D1, 14, 4)    # an agent appeared in the afternoon
    assert ws_changes(contoso) == [("2024-03-01", 3, 4, "get_units_now")]
    sync(contoso, settings, D2)                    # the night sees 4: nothing new
    assert ws_changes(contoso) == [("2024-03-01", 3, 4, "get_units_now")]


def test_snapshot_completed_after_a_later_press_takes_the_change_over(contoso, settings):
    sync(contoso, settings, D1)
    sync(contoso, settings, D2, diff=False)        # the night's run stopped before its diff
    press(contoso, settings, "S-WS", D2, 10, 4)
    assert ws_changes(contoso) == [("2024-03-02", 3, 4, "get_units_now")]
    diff_step(contoso, settings, D2)               # the re-run completes the 02:00 snapshot
    assert ws_changes(contoso) == [("2024-03-02", 3, 4, "nightly_sync")]
    with contoso.connect() as conn:
        assert conn.execute(text("SELECT units FROM services WHERE service_id = 'S-WS'")).scalar() == 4


def test_first_press_sets_the_starting_units(contoso, settings):
    press(contoso, settings, "S-WS", D1, 1, 3)     # pressed before any snapshot exists
    sync(contoso, settings, D1)                    # 02:00 the same day: still 3
    assert ws_changes(contoso) == []
    with contoso.connect() as conn:
        assert conn.execute(text("SELECT units FROM services WHERE service_id = 'S-WS'")).scalar() == 3


def test_presses_on_both_sides_of_the_night_keep_the_day_s_last_press(contoso, settings):
    sync(contoso, settings, D1)                    # S-WS counts 3
    press(contoso, settings, "S-WS", D2, 1, 6)     # 01:00, before the night's 02:00 snapshot
    sync(contoso, settings, D2)                    # 02:00 counts 4
    assert ws_changes(contoso) == [("2024-03-02", 3, 6, "get_units_now"), ("2024-03-02", 6, 4, "nightly_sync")]
    press(contoso, settings, "S-WS", D2, 15, 7)    # the afternoon press supersedes the 01:00 one
    expected = [("2024-03-02", 3, 4, "nightly_sync"), ("2024-03-02", 4, 7, "get_units_now")]
    assert ws_changes(contoso) == expected
    for day in (D1, D2):                           # re-runs of either night agree
        diff_step(contoso, settings, day)
        assert ws_changes(contoso) == expected
    with contoso.connect() as conn:
        assert conn.execute(text("SELECT units FROM services WHERE service_id = 'S-WS'")).scalar() == 7


def test_mail_says_when_the_agents_listed_do_not_add_up_to_a_change_after_a_press(contoso, settings):
    sync(contoso, settings, D1)                    # S-WS counts 3
    press(contoso, settings, "S-WS", D1, 14, 6)    # the afternoon press saw 6
    sync(contoso, settings, D2)                    # the night counts 4: 6 → 4, agents moved +1
    with contoso.connect() as conn:
        body = conn.execute(text(
            "SELECT body FROM notification_outbox WHERE message_id = 'unit-changes:C-CONTOSO:2024-03-02'"
        )).scalar()
    blocks = {block.split(":")[0]: block for block in body.split("\n- ")[1:]}
    assert blocks["Workstations (S-WS)"].startswith("Workstations (S-WS): 6 → 4 units, effective 2024-03-02\n")
    assert "a Get Units Now reading in between already counted part of it" in blocks["Workstations (S-WS)"]
    assert "Get Units Now" not in blocks["Servers (S-SRV)"]  # its agents add up to its change


def test_presses_on_a_new_service_s_first_day_bill_the_day_s_last_press(contoso, settings):
    """No snapshot yet: S-WS is pressed twice on its first day (3, then 5 an hour later). The
    unit history keeps the day's last press, so billing must start from 5 too: it started from
    the first press (3) and billed 3 units with no change to 5 anywhere."""
    press(contoso, settings, "S-WS", D1, 9, 3)
    press(contoso, settings, "S-WS", D1, 10, 5)
    with contoso.begin() as conn:
        conn.execute(text("INSERT INTO sync_runs (snapshot_date, status) VALUES (:d, 'gap')"), {"d": D1})
        assert conn.execute(text("SELECT units FROM services WHERE service_id = 'S-WS'")).scalar() == 5
    assert ws_changes(contoso) == []
    with contoso.connect() as conn, conn.begin() as transaction:
        lines = plan_contract(conn, store.lock_contract(conn, "C-CONTOSO"), D1).lines
        transaction.rollback()
    billed = [(x.kind, x.units) for x in lines if x.service_id == "S-WS"]
    assert billed and {units for _, units in billed} == {5}, billed


def test_a_press_before_the_first_count_the_same_day_sets_the_starting_units_billing_uses(contoso, settings):
    """S-WS (active since January) is first observed on March 1st: pressed at 01:00 (5), then
    counted at 02:00 (3). The unit history starts at 5 and changes to 3 on March 1st, so January
    and February bill 5 units: billing took the count (3), comparing dates only."""
    press(contoso, settings, "S-WS", D1, 1, 5)
    sync(contoso, settings, D1)
    assert ws_changes(contoso) == [("2024-03-01", 5, 3, "nightly_sync")]
    with contoso.connect() as conn, conn.begin() as transaction:
        lines = plan_contract(conn, store.lock_contract(conn, "C-CONTOSO"), D1).lines
        transaction.rollback()
    normal = {str(x.period_start)[:7]: x.units for x in lines if x.service_id == "S-WS" and x.kind == "normal"}
    assert normal == {"2024-01": 5, "2024-02": 5, "2024-03": 3}
