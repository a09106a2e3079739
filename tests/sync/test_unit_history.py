"""The pure derivation of unit changes from observations (no database)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import example, given
from hypothesis import strategies as st

from agent_billing.sync.changes.history import (
    NIGHTLY,
    READING,
    Change,
    Observation,
    Position,
    Window,
    derive_changes,
    last_press_per_day,
    manual_change,
    nightly_position,
    units_at,
)

TZ = ZoneInfo("America/New_York")
D1, D2, D3 = date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)


def at(day: date, hour: int) -> Position:
    return Position(day, datetime(day.year, day.month, day.day, hour, tzinfo=TZ).astimezone(UTC))


def night(sid: str, day: date, units: int) -> Observation:
    return Observation(sid, at(day, 2), units, NIGHTLY)


def press(sid: str, day: date, hour: int, units: int) -> Observation:
    return Observation(sid, at(day, hour), units, READING)


def test_the_first_observation_sets_the_starting_units_and_each_difference_is_a_change():
    changes = derive_changes({}, [night("S", D1, 3), night("S", D2, 3), night("S", D3, 5)])
    assert changes == [Change("S", D3, 3, 5, NIGHTLY, at(D3, 2).at)]
    assert changes[0].change_id == "S:2024-03-03:nightly_sync" and changes[0].delta == 2


def test_the_units_before_a_window_are_the_start_of_its_first_observation():
    assert derive_changes({"S": 4}, [night("S", D2, 3)]) == [Change("S", D2, 4, 3, NIGHTLY, at(D2, 2).at)]
    assert derive_changes({"S": 3}, [night("S", D2, 3)]) == []


def test_a_day_s_last_press_supersedes_its_earlier_ones_even_before_the_night():
    early, late = press("S", D2, 1, 6), press("S", D2, 15, 7)
    assert last_press_per_day([late, early, press("S", D1, 9, 2)]) == [press("S", D1, 9, 2), late]
    changes = derive_changes({"S": 3}, [night("S", D2, 4), *last_press_per_day([early, late])])
    assert [(c.units_before, c.units_after, c.source) for c in changes] == [(3, 4, NIGHTLY), (4, 7, READING)]


def test_a_snapshot_observed_after_its_date_stands_at_the_start_of_the_date():
    late = datetime(2024, 3, 5, 12, tzinfo=UTC)
    assert nightly_position(D2, late, TZ) == Position(D2, datetime(2024, 3, 2, 5, tzinfo=UTC))
    assert nightly_position(D2, None, TZ) == nightly_position(D2, late, TZ)


def test_a_window_holds_what_is_after_its_lower_bound_up_to_its_upper_one():
    window = Window(at(D1, 2), at(D3, 2))
    assert at(D1, 2) not in window and at(D1, 3) in window and at(D3, 2) in window and at(D3, 3) not in window
    assert at(D1, 0) in Window(None, None)


def test_units_at_takes_each_service_s_latest_observation_up_to_the_position():
    history = [night("S", D1, 3), press("S", D1, 14, 4), night("T", D1, 1), night("S", D2, 5)]
    assert units_at(history, at(D1, 2)) == {"S": 3, "T": 1}
    assert units_at(history, at(D1, 23)) == {"S": 4, "T": 1}
    assert units_at(history, at(D2, 2)) == {"S": 5, "T": 1}


def test_a_second_manual_edit_the_same_day_replaces_the_first():
    now = datetime(2024, 3, 2, 9, tzinfo=UTC)
    first = manual_change("M", D2, 10, 12, None, now)
    assert (first.units_before, first.units_after, first.change_id) == (10, 12, "M:2024-03-02:manual")
    second = manual_change("M", D2, 12, 15, first, now)
    assert (second.units_before, second.units_after) == (10, 15)
    assert manual_change("M", D2, 15, 10, second, now) is None  # back where the day started


observations = st.lists(
    st.tuples(st.sampled_from("ST"), st.integers(0, 9), st.integers(0, 23), st.integers(0, 4), st.booleans()),
    max_size=40,
)


@given(observations, st.sets(st.integers(0, 9)))
@example([("S", 0, 0, 1, True), ("S", 0, 2, 0, False), ("S", 1, 0, 0, False)], {0})  # a press at the night's instant
def test_deriving_window_by_window_equals_deriving_the_whole_history(raw, cuts):
    """What the store relies on: the changes after a good snapshot depend only on its units."""
    history = [
        Observation(sid, at(D1 + timedelta(days=day), 2 if is_night else hour), units, NIGHTLY if is_night else READING)
        for sid, day, hour, units, is_night in raw
    ]
    history = list({(o.service_id, o.position, o.source): o for o in history}.values())
    nightly = [o for o in history if o.source == NIGHTLY]
    kept = nightly + last_press_per_day(o for o in history if o.source == READING)
    whole = derive_changes({}, kept)
    bounds = sorted({at(D1 + timedelta(days=d), 2) for d in cuts})
    windows = [Window(lo, hi) for lo, hi in zip([None, *bounds], [*bounds, None], strict=True)]
    pieces = []
    for window in windows:
        before = units_at(kept, window.lower) if window.lower else {}
        pieces += derive_changes(before, [o for o in kept if o.position in window])
    key = lambda c: (c.service_id, c.effective_date, c.detected_at, c.source)  # noqa: E731
    assert sorted(pieces, key=key) == sorted(whole, key=key)
