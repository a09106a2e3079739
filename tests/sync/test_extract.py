"""Extract step: landing over real HTTP from the simulator, reuse of a landing, gaps, Get Units Now."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text

from agent_billing.settings import Settings
from agent_billing.sync.landing import RawLanding
from agent_billing.sync.pipeline import extract_step, gap_warning

NOW = datetime(2024, 3, 10, 12, tzinfo=UTC)


def no_vsa():
    raise AssertionError("VSA must not be called")


class VsaCalled(Exception):
    pass


def vsa_called():
    raise VsaCalled


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("night", "grace", "named", "turns"), [
    (date(2026, 11, 3), 36, "2026-11-04 12:00 Europe/Amsterdam", datetime(2026, 11, 4, 11, tzinfo=UTC)),
    # the clock skips 02:00-03:00: the moment is named as the clock shows it
    (date(2026, 3, 28), 26, "2026-03-29 03:00 Europe/Amsterdam", datetime(2026, 3, 29, 1, tzinfo=UTC)),
    # the clock shows 02:00-03:00 twice: the offset says which
    (date(2026, 10, 24), 26, "2026-10-25 02:00 Europe/Amsterdam (UTC+0200)", datetime(2026, 10, 25, tzinfo=UTC)),
])
def test_the_moment_a_failed_night_s_warning_names_is_when_it_turns_into_a_gap(contoso, settings, night, grace,
                                                                               named, turns):
    """The data team's alert and the command line say by when a night whose extract failed must
    be run again: a minute before that moment the night is still extracted from VSA, a minute
    after it is recorded as a gap."""
    settings = settings.model_copy(update={"timezone": "Europe/Amsterdam", "late_grace_hours": grace})
    assert gap_warning(settings, night) == f"before {named}: later, with no landing, the night becomes a gap"
    with pytest.raises(VsaCalled):
        extract_step(contoso, settings, night, vsa_called, now=turns - timedelta(minutes=1))
    assert extract_step(contoso, settings, night, no_vsa, now=turns + timedelta(minutes=1)).status == "gap"
    allowed = settings.model_copy(update={"late_observation": "allow"})
    assert gap_warning(allowed, night) is None  # a late run takes VSA's present state: never a gap


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_missing_old_date_is_a_gap_not_a_guess(contoso, settings):
    result = extract_step(contoso, settings, date(2024, 3, 1), no_vsa, now=NOW)
    assert result.status == "gap"
    with contoso.connect() as conn:
        status, message = conn.execute(text("SELECT status, message FROM sync_runs")).one()
        alert = conn.execute(text("SELECT recipients, subject FROM notification_outbox")).one()
    assert status == "gap"
    assert "no raw extract for 2024-03-01" in message and "AGENT_BILLING_LATE_OBSERVATION=allow" in message
    assert alert == ("data@msp.example", "[agent-billing] Snapshot 2024-03-01 recorded as a gap")
    assert not RawLanding(settings.raw_path, date(2024, 3, 1)).exists()


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_existing_landing_is_reused_without_calling_vsa(contoso, settings):
    from .conftest import DAYS, write_landing

    day = sorted(DAYS)[0]
    write_landing(settings.raw_path, day, *DAYS[day])
    result = extract_step(contoso, settings, day, no_vsa, now=NOW)
    assert result.status == "reused"


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("folder", ["absent", "empty"])
def test_a_raw_volume_that_is_not_mounted_is_refused_before_vsa_is_called(contoso, settings, tmp_path, folder):
    """Once the warehouse holds a landed night, a raw folder that is absent or holds no landing
    is a volume that is not mounted (a container's own empty folder): a night landed there would
    be lost with the container. A first night on a fresh install creates the folder."""
    from agent_billing.sync.pipeline import RawFolderMissing, count_step, diff_step, load_step

    from .conftest import DAYS, write_landing

    d1, d2 = sorted(DAYS)[:2]
    write_landing(settings.raw_path, d1, *DAYS[d1])
    for step in (load_step, count_step, diff_step):
        step(contoso, settings, d1)
    unmounted = tmp_path / "unmounted"
    if folder == "empty":
        unmounted.mkdir()
    moved = Settings(raw_path=unmounted, data_team_emails="data@msp.example")
    with pytest.raises(RawFolderMissing) as refused:
        extract_step(contoso, moved, d2, no_vsa, now=datetime(2024, 3, 2, 12, tzinfo=UTC))
    state = "does not exist" if folder == "absent" else "holds no landing"
    assert str(refused.value) == (
        f"the raw landing folder {unmounted} {state}, but the warehouse has nights synced up to {d1}: is the raw "
        "volume mounted there? (AGENT_BILLING_RAW_PATH; docs/deployment.md, 'The raw landing volume must be "
        "shared by every worker'); nothing was extracted")
    assert not RawLanding(unmounted, d2).exists()
    # A replay after a restore on that volume: a late night is not recorded as a gap, and the
    # complete night is not sent to be restored into the container's own folder.
    for night in (d2, d1):
        with pytest.raises(RawFolderMissing, match="is the raw volume mounted there"):
            extract_step(contoso, moved, night, no_vsa, now=NOW)
    with contoso.connect() as conn:
        assert [(str(d), s) for d, s in conn.execute(text("SELECT snapshot_date, status FROM sync_runs"))] == [
            (str(d1), "complete")]
        assert conn.execute(text("SELECT COUNT(*) FROM notification_outbox WHERE kind = 'gap'")).scalar() == 0


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_killed_extract_s_folder_is_removed_by_the_next_extract_of_any_date(contoso, settings):
    """An extract killed mid-landing leaves its staging folder; Airflow's retry two minutes later
    lands the date (the folder is not stale yet) and every later run of it reuses the landing:
    the partial landing (165 MB per million agents) stayed for good. Any later extract removes it."""
    import os
    import time as clock

    from agent_billing.sync.landing import STALE_STAGING

    from .conftest import DAYS, write_landing

    d1, d2 = sorted(DAYS)[:2]
    settings.raw_path.mkdir(parents=True, exist_ok=True)
    dead = settings.raw_path / f".{d1.isoformat()}.0123abcd.tmp"
    dead.mkdir()
    (dead / "agents.jsonl.gz").write_bytes(b"half a file")
    old = clock.time() - STALE_STAGING - 60
    for path in (dead / "agents.jsonl.gz", dead):
        os.utime(path, (old, old))
    write_landing(settings.raw_path, d2, *DAYS[d2])
    assert extract_step(contoso, settings, d2, no_vsa, now=NOW).status == "reused"
    assert not dead.exists()


@pytest.mark.parametrize("warehouse_url", ["sqlite", "postgresql"], indirect=True)
def test_a_failed_night_recorded_as_a_gap_leaves_its_staging_to_the_retention(contoso, settings):
    """A night whose gate failed keeps its staging to be looked at; moved aside past the grace
    window it becomes a gap, which no run merges: its staging (1.2M rows and two partitions per
    million agents) was kept for good. The gap settles it, and the retention drops it."""
    import shutil

    from agent_billing.sync.pipeline import load_step
    from agent_billing.sync.snapshot_history import prune_staging
    from agent_billing.warehouse.staging import stage_of

    from .conftest import DAYS, write_landing

    day = sorted(DAYS)[0]
    write_landing(settings.raw_path, day, *DAYS[day])
    load_step(contoso, settings, day)  # loaded, never merged (its gate failed, say)
    shutil.rmtree(settings.raw_path / day.isoformat())  # moved aside, as the runbook says
    assert extract_step(contoso, settings, day, no_vsa, now=NOW).status == "gap"
    with contoso.connect() as conn:
        assert stage_of(conn, day) == "settled"
        conn.execute(text("INSERT INTO history_dates (snapshot_date) VALUES (:d)"), {"d": NOW.date()})
        conn.commit()
    prune_staging(contoso, NOW.date(), 0)
    with contoso.connect() as conn:
        assert stage_of(conn, day) == "dropped"
        assert conn.execute(text("SELECT COUNT(*) FROM vsa_agents WHERE snapshot_date = :d"), {"d": day}).scalar() == 0


def test_landing_is_atomic_and_immutable(tmp_path):
    landing = RawLanding(tmp_path, date(2024, 3, 1))
    with pytest.raises(RuntimeError), landing.staging() as stage:
        stage.write_lines("agents.jsonl.gz", [json.dumps({"AgentId": "1"})])
        raise RuntimeError("extract failed half-way")
    assert not landing.exists() and list(tmp_path.iterdir()) == []
    with landing.staging() as stage:
        stage.meta = {"observed_at": NOW.isoformat()}
        stage.write_lines("agents.jsonl.gz", [json.dumps({"AgentId": 418865203377145})])
    assert [r["AgentId"] for r in landing.records("agents.jsonl.gz")] == ["418865203377145"]
    assert landing.verify()["files"]["agents.jsonl.gz"]["records"] == 1
    from agent_billing.sync.landing import LandingError

    with pytest.raises(LandingError, match="immutable"), landing.staging():
        pass


def test_tampered_landing_fails_its_checksum(tmp_path):
    import gzip

    from agent_billing.sync.landing import LandingError

    landing = RawLanding(tmp_path, date(2024, 3, 1))
    with landing.staging() as stage:
        stage.meta = {"observed_at": NOW.isoformat()}
        stage.write_lines("agents.jsonl.gz", [json.dumps({"AgentId": "1"})])
    with gzip.open(landing.path / "agents.jsonl.gz", "wt") as fh:
        fh.write('{"AgentId": "2"}\n')
    with pytest.raises(LandingError, match="does not match its manifest checksum"):
        landing.verify()


def test_settings_reject_unknown_timezone():
    with pytest.raises(ValueError, match="unknown timezone 'Mars/Olympus'"):
        Settings(timezone="Mars/Olympus")
    # a file of the zone database that stands for the machine's own setting: each machine would
    # bill by its clock
    with pytest.raises(ValueError, match="timezone 'localtime' is this machine's own setting"):
        Settings(timezone="localtime")
    with pytest.raises(ValueError, match=r"timezone 'right/UTC' is a copy of a zone .*: use its IANA name \(UTC\)"):
        Settings(timezone="right/UTC")  # with leap seconds: not the UTC of every other machine


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_future_date_is_refused(contoso, settings):
    from agent_billing.errors import UserError

    with pytest.raises(UserError, match="snapshot date 2024-03-11 is in the future"):
        extract_step(contoso, settings, date(2024, 3, 11), no_vsa, now=NOW)


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("delivered", [False, True], ids=["unsent", "sent"])
def test_a_gap_filled_from_a_restored_landing_withdraws_its_unsent_gap_alert(contoso, settings, delivered):
    """A night recorded as a gap while mail was down, then filled (its landing restored from
    backup and the night re-run): the alert waiting in the outbox says "recorded as a gap", no
    longer true, and is withdrawn. An alert already sent stays, as the record of what was told."""
    from agent_billing.sync.pipeline import count_step, diff_step, load_step

    from .conftest import DAYS, write_landing

    day = sorted(DAYS)[0]
    assert extract_step(contoso, settings, day, no_vsa, now=NOW).status == "gap"
    if delivered:
        with contoso.begin() as conn:
            conn.execute(text("UPDATE notification_outbox SET sent_at = CURRENT_TIMESTAMP"))
    write_landing(settings.raw_path, day, *DAYS[day])
    assert extract_step(contoso, settings, day, no_vsa, now=NOW).status == "reused"
    for step in (load_step, count_step):
        step(contoso, settings, day)
    assert diff_step(contoso, settings, day).status == "complete"
    with contoso.connect() as conn:
        gap_alerts = conn.execute(text("SELECT message_id FROM notification_outbox WHERE kind = 'gap'")).scalars().all()
    assert gap_alerts == ([f"gap:{day}"] if delivered else [])


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("observation", ["refuse", "allow"])
def test_nights_no_run_took_are_recorded_as_gaps_and_the_data_team_told(contoso, settings, observation):
    """A scheduler down from the 2nd to the 5th: Airflow runs only the 6th's slot, and the nights
    between would have no row, no alert, and billing would carry the units over them unseen. The
    6th's extract records those past the grace window with no landing as gaps, as their own runs
    would, and mails which nights to run: a landed one, and the 5th, still in time."""
    from .conftest import DAYS, write_landing

    settings = settings.model_copy(update={"late_observation": observation})
    first, landed = date(2024, 3, 1), date(2024, 3, 3)
    night, now = date(2024, 3, 6), datetime(2024, 3, 6, 3, tzinfo=UTC)  # the 5th turns into a gap at 12:00
    with contoso.begin() as conn:
        conn.execute(text("INSERT INTO sync_runs (snapshot_date, status) VALUES (:d, 'complete')"), {"d": first})
    write_landing(settings.raw_path, landed, *DAYS[sorted(DAYS)[0]])
    write_landing(settings.raw_path, night, *DAYS[sorted(DAYS)[0]])
    result = extract_step(contoso, settings, night, no_vsa, now=now)
    assert (result.status, result.detail["gaps_recorded_before"]) == (
        "reused", ["2024-03-02", "2024-03-04"] if observation == "refuse" else [])
    assert extract_step(contoso, settings, night, no_vsa, now=now).status == "reused"  # again: one mail

    with contoso.connect() as conn:
        runs = {str(d)[:10]: (status, message) for d, status, message in conn.execute(
            text("SELECT snapshot_date, status, message FROM sync_runs"))}
        mail = conn.execute(text("SELECT recipients, subject, body FROM notification_outbox")).all()
    gaps = ["2024-03-02", "2024-03-04"] if observation == "refuse" else []
    assert sorted(runs) == ["2024-03-01", *gaps]
    for gap in gaps:
        assert runs[gap][0] == "gap" and runs[gap][1].startswith("never run (found by the run of 2024-03-06")
    [(recipients, subject, body)] = mail
    assert (recipients, subject) == (
        "data@msp.example", "[agent-billing] Nights never run before 2024-03-06: 2024-03-02 to 2024-03-05")
    if observation == "refuse":
        assert body.splitlines()[1:] == [
            "Recorded as gaps, being more than 36 h old with no landing: 2024-03-02, 2024-03-04. The next good "
            "snapshot carries any change on its own date.",
            "Run 2024-03-03, 2024-03-05 (before 2024-03-06 12:00 UTC: later, with no landing, the night becomes a "
            "gap): `agent-billing sync --date 2024-03-03` for each, or an Airflow backfill from 2024-03-03 to "
            "2024-03-05 (docs/runbook.md, 'Backfill a missed night': bounds with the billing timezone's offset, "
            "--max-active-runs 1)."]
    else:  # a late run takes VSA's present state: nothing is a gap, every night is to run, with what that bills
        assert body.splitlines()[1].startswith("LATE_OBSERVATION=allow: a night without a landing run now records "
                                               "VSA's present state as that night's")
        assert body.splitlines()[2].startswith("Run 2024-03-02 to 2024-03-05: `agent-billing sync --date 2024-03-02`")
    # The 6th has run; nobody ran the 3rd and the 5th. The 7th finds no new night; the 5th, named
    # as still in time, is past its grace window now: recorded as a gap and told (once), under
    # refuse. The 3rd has a landing: it can still be run, and was named already.
    with contoso.begin() as conn:
        conn.execute(text("INSERT INTO sync_runs (snapshot_date, status) VALUES (:d, 'complete')"), {"d": night})
    write_landing(settings.raw_path, date(2024, 3, 7), *DAYS[sorted(DAYS)[0]])
    recorded = [extract_step(contoso, settings, date(2024, 3, 7), no_vsa, now=datetime(2024, 3, 7, 3, tzinfo=UTC))
                .detail["gaps_recorded_before"] for _ in range(2)]  # run twice: recorded and told once
    assert recorded == ([[], []] if observation == "allow" else [["2024-03-05"], []])
    with contoso.connect() as conn:
        status = conn.execute(text("SELECT status FROM sync_runs WHERE snapshot_date = :d"),
                              {"d": date(2024, 3, 5)}).scalar()
        mail = conn.execute(text("SELECT subject, body FROM notification_outbox ORDER BY 1")).all()
    if observation == "allow":
        assert status is None and len(mail) == 1
    else:
        assert status == "gap"
        assert mail[-1] == (
            "[agent-billing] Nights never run before 2024-03-07: 2024-03-05",
            "Older nights no run took, still without one when the run of 2024-03-07 looked again: 2024-03-05.\n"
            "Recorded as gaps, being more than 36 h old with no landing: 2024-03-05. The next good snapshot carries "
            "any change on its own date.")
        assert len(mail) == 2


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_retry_that_records_a_night_as_a_gap_tells_it(contoso, settings):
    """The 6th's run at 03:00 names the 5th as still in time (12:00), then its extract fails
    (VSA down); its retry at 14:00 records the 5th as a gap. The only mail said "run it before
    12:00": nobody was told it became a gap. A retry that records gaps mails them; one that
    records none mails nothing."""
    from .conftest import DAYS, write_landing

    first, night = date(2024, 3, 4), date(2024, 3, 6)
    with contoso.begin() as conn:
        conn.execute(text("INSERT INTO sync_runs (snapshot_date, status) VALUES (:d, 'complete')"), {"d": first})
    write_landing(settings.raw_path, first, *DAYS[sorted(DAYS)[0]])
    with pytest.raises(VsaCalled):  # VSA is called after the nights are judged, and fails
        extract_step(contoso, settings, night, vsa_called, now=datetime(2024, 3, 6, 3, tzinfo=UTC))
    write_landing(settings.raw_path, night, *DAYS[sorted(DAYS)[0]])  # VSA answers the retry
    retries = [extract_step(contoso, settings, night, no_vsa, now=datetime(2024, 3, 6, 14, tzinfo=UTC))
               .detail["gaps_recorded_before"] for _ in range(2)]
    assert retries == [["2024-03-05"], []]
    with contoso.connect() as conn:
        mail = conn.execute(text("SELECT subject, body FROM notification_outbox WHERE message_id LIKE 'missed:%' "
                                 "ORDER BY created_at")).all()
    assert [subject for subject, _ in mail] == ["[agent-billing] Nights never run before 2024-03-06: 2024-03-05"] * 2
    assert mail[0][1].splitlines()[1].startswith("Run 2024-03-05 (before 2024-03-06 12:00 UTC")
    assert mail[1][1].splitlines()[1] == (
        "Recorded as gaps, being more than 36 h old with no landing: 2024-03-05. The next good snapshot "
        "carries any change on its own date.")


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_first_night_after_trial_runs_records_no_missed_nights(contoso, settings):
    """A trial `sync --date` of an old date left a gap row; the first real night, a year and a
    half later, is a first deployment: no night before it ever ran, so none is recorded as
    missed (515 gaps and a mail otherwise)."""
    from .conftest import DAYS, write_landing

    with contoso.begin() as conn:
        conn.execute(text("INSERT INTO sync_runs (snapshot_date, status) VALUES ('2023-01-01', 'gap')"))
    night = date(2024, 6, 1)
    write_landing(settings.raw_path, night, *DAYS[sorted(DAYS)[0]])
    result = extract_step(contoso, settings, night, no_vsa, now=datetime(2024, 6, 1, 3, tzinfo=UTC))
    assert result.detail["gaps_recorded_before"] == []
    with contoso.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM sync_runs")).scalar() == 1
        assert conn.execute(text("SELECT COUNT(*) FROM notification_outbox")).scalar() == 0



@pytest.mark.parametrize("warehouse_url", ["sqlite", "postgresql"], indirect=True)
def test_a_database_error_is_recorded_and_mailed_as_one_line(contoso, settings):
    """A step failing on the database: SQLAlchemy's text of the error holds the whole statement
    and its parameters (a 2,639-character mail when a session was cut during the diff); the
    night's record and the data team's alert say the driver's own first line."""
    from agent_billing.sync.pipeline import sync_date

    from .conftest import DAYS, write_landing

    d1 = sorted(DAYS)[0]
    write_landing(settings.raw_path, d1, *DAYS[d1])
    with contoso.begin() as conn:  # a table the count writes is gone: the same error every time
        conn.execute(text("ALTER TABLE service_unit_counts RENAME TO service_unit_counts_moved"))
    with pytest.raises(Exception, match=r"\[SQL: "):
        sync_date(contoso, settings, d1, no_vsa, now=NOW)
    with contoso.connect() as conn:
        message = conn.execute(text("SELECT message FROM sync_runs WHERE snapshot_date = :d"), {"d": d1}).scalar_one()
        [body] = conn.execute(text("SELECT body FROM notification_outbox")).scalars()
    assert message.startswith("count failed: ") and "service_unit_counts" in message, message
    assert "\n" not in message and "[SQL" not in message and len(message) < 300, message
    assert message in body and "[SQL" not in body
