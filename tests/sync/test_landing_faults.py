"""Landing failure edges: a killed extract's staging folder, missing files, a folder that
cannot be written, and two extracts of one date racing. Each gives one line naming the path."""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
from datetime import UTC, date, datetime

import pytest

from agent_billing.errors import EXIT_BAD_INPUT, EXIT_FAILURE
from agent_billing.sync.extract import land_from_vsa
from agent_billing.sync.landing import STALE_STAGING, LandingError, RawLanding

DAY = date(2024, 3, 1)
NOW = datetime(2024, 3, 1, 2, tzinfo=UTC)


def _land(landing: RawLanding) -> None:
    with landing.staging() as stage:
        stage.meta = {"observed_at": NOW.isoformat()}
        stage.write_lines("agents.jsonl.gz", [json.dumps({"AgentId": "1"})], total_records=1)


def test_a_killed_extracts_staging_folder_is_removed_by_the_next_extract(tmp_path):
    dead = tmp_path / f".{DAY.isoformat()}.deadbeef.tmp"
    (dead / "agents_in_view").mkdir(parents=True)
    (dead / "agents.jsonl.gz").write_bytes(b"half a file")
    old = time.time() - STALE_STAGING - 60
    for path in (dead / "agents.jsonl.gz", dead / "agents_in_view", dead):
        os.utime(path, (old, old))
    live = tmp_path / f".{DAY.isoformat()}.cafef00d.tmp"  # another extract, still writing
    live.mkdir()
    (live / "orgs.jsonl.gz").write_bytes(b"")
    _land(RawLanding(tmp_path, DAY))
    assert not dead.exists()
    assert live.exists()
    assert RawLanding(tmp_path, DAY).verify()["files"]["agents.jsonl.gz"]["records"] == 1


def test_a_missing_landed_file_names_its_path(tmp_path):
    landing = RawLanding(tmp_path, DAY)
    _land(landing)
    (landing.path / "agents.jsonl.gz").unlink()
    with pytest.raises(LandingError) as err:
        landing.verify()
    assert str(landing.path) in str(err.value) and "agents.jsonl.gz is missing" in str(err.value)
    with pytest.raises(LandingError, match="agents.jsonl.gz cannot be read"):
        list(landing.records("agents.jsonl.gz"))


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_disk_names_the_landing_and_leaves_nothing(tmp_path):
    """Writes that fail with ENOSPC (a file redirected to /dev/full) give one LandingError
    naming the staging folder; no landing and no staging folder remain."""
    landing = RawLanding(tmp_path, DAY)
    with pytest.raises(LandingError) as err, landing.staging() as stage:
        stage.meta = {"observed_at": NOW.isoformat()}
        (stage.path / "agents.jsonl.gz").symlink_to("/dev/full")
        stage.write_lines("agents.jsonl.gz", (json.dumps({"AgentId": str(n)}) for n in range(100_000)))
    assert "No space left on device" in str(err.value) and str(tmp_path) in str(err.value)
    assert err.value.exit_code == EXIT_FAILURE  # the system's trouble, not a setting to fix (README)
    assert not landing.exists() and list(tmp_path.iterdir()) == []


def test_a_landing_folder_that_cannot_be_created_names_it(tmp_path):
    blocker = tmp_path / "raw"
    blocker.write_text("a file where the landing folder should be")
    with pytest.raises(LandingError) as err:
        _land(RawLanding(blocker, DAY))
    assert str(err.value) == (f"cannot create the raw landing under {blocker}: it, or a folder above it, is a "
                              "file, not a folder (check AGENT_BILLING_RAW_PATH)")  # not "File exists"
    assert err.value.exit_code == EXIT_BAD_INPUT


class _SlowClient:
    """Lands one record per collection, pausing so that two extracts overlap."""

    base_url, user = "http://vsa.test", "u"

    def __init__(self, gate: threading.Barrier) -> None:
        self.gate = gate

    def extract(self, resource, consume, *, filter=None, view_id=None):
        class Records(list):
            total = 1

        if resource == "agents":
            self.gate.wait(timeout=10)
        return consume(Records([type("R", (), {"raw": json.dumps({"AgentId": "1"})})()]))

    def close(self) -> None:
        pass


def test_two_extracts_of_one_date_both_end_with_the_first_landing(tmp_path):
    """The extract that loses the race keeps the winner's landing and succeeds with it,
    instead of failing (and alerting 'failed') for a date that was landed."""
    gate = threading.Barrier(2)
    results, errors = [], []

    def run() -> None:
        try:
            results.append(land_from_vsa(_SlowClient(gate), RawLanding(tmp_path, DAY), [], observed_at=NOW))
        except Exception as exc:  # noqa: BLE001 - the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 2 and results[0] == results[1]
    assert [p.name for p in tmp_path.iterdir()] == [DAY.isoformat()]


def test_json_with_carriage_returns_lands_and_reads_back(tmp_path):
    """VSA behind a .NET server may indent its JSON with CRLF: a record's raw text then holds
    CRs, which are JSON whitespace. The landing was written (and checksummed), then every load
    failed to read it ("Expecting property name"), and the landing is immutable: the date was
    stuck. Written now without the CRs; one landed before (CRs kept) reads as well."""
    crlf = '{\r\n  "OrgId": "1",\r\n  "OrgName": "Contoso"\r\n}'
    landing = RawLanding(tmp_path, DAY)
    with landing.staging() as stage:
        stage.meta = {"observed_at": NOW.isoformat()}
        stage.write_lines("orgs.jsonl.gz", [crlf, crlf.replace('"1"', '"2"')], total_records=2)
    assert [r["OrgId"] for r in landing.records("orgs.jsonl.gz")] == ["1", "2"]
    assert b"\r" not in gzip.decompress((landing.path / "orgs.jsonl.gz").read_bytes())

    older = landing.path / "kept_with_crs.jsonl.gz"  # as the writer left it: each \n made a space
    kept = crlf.replace("\n", " ")
    older.write_bytes(gzip.compress(f"{kept}\n{kept}\n".encode()))
    assert [r["OrgName"] for r in landing.records("kept_with_crs.jsonl.gz")] == ["Contoso", "Contoso"]
