"""Extract step: landing over real HTTP from the simulator, reuse of a landing, gaps, Get Units Now."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import text

from agent_billing.settings import Settings
from agent_billing.sync.landing import RawLanding
from agent_billing.sync.pipeline import extract_step

NOW = datetime(2024, 3, 10, 12, tzinfo=UTC)


def no_vsa():
    raise AssertionError("VSA must not be called")


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
    with pytest.raises(ValueError):
        Settings(timezone="Mars/Olympus")


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_a_future_date_is_refused(contoso, settings):
    from agent_billing.errors import UserError

    with pytest.raises(UserError, match="snapshot date 2024-03-11 is in the future"):
        extract_step(contoso, settings, date(2024, 3, 11), no_vsa, now=NOW)
