"""A released migration is never edited: a warehouse that ran it keeps what it did, so an edit
reaches only new warehouses and the two drift apart (a review found variants of 0007, 0008,
0014 and 0015 that had been edited between commits of one working session, before any landed).
A fix to a released revision is a new revision. When a revision lands, its digest goes here."""

from __future__ import annotations

import hashlib
from pathlib import Path

VERSIONS = Path(__file__).resolve().parents[2] / "include" / "agent_billing" / "warehouse" / "migrations" / "versions"
RELEASED = {  # file: the first 16 hex digits of its SHA-256 as released
    "0001_initial.py": "f2632b21c53050b0",
    "0002_billing.py": "51cc056ddc05c509",
    "0003_billing_cycles.py": "a33bba4f0c6c5ee9",
    "0004_org_lock_outbox_claim.py": "96f74255fac716bf",
    "0005_exact_money.py": "9b4d91db5d6fbd52",
    "0006_history_indexes.py": "c8d39e60557a4e23",
    "0007_contract_limits.py": "09bce26606ec6efc",
    "0008_sync_scope_report.py": "b0c12519db289e87",
    "0009_staging_brin.py": "7866321adf81fd4c",
    "0010_history_reads.py": "bcda6560595c6a66",
    "0011_staging_partitions.py": "45efe8beb014ac41",
    "0012_staged_dates.py": "68a01f2d68a4ac18",
    "0013_count_without_staging.py": "1b0f6f5a27f5f5f9",
    "0014_settled_months.py": "9e7e94ac1ab4afc7",
    "0015_stale_rows_appended.py": "ae3730a433c7caf6",
    "0016_count_inputs_history.py": "111a9815110eab9d",
    "0017_unit_change_billing.py": "e38510add68e45a2",
    "0018_posted_invoices_as_posted.py": "c2410332582fdbeb",
    "0019_unit_history_lock_for_every_writer.py": "0b0330191c9b5f07",
    "0020_pending_lines_dated_per_contract.py": "db9e2314f97ffa8d",
    "0021_nights_to_recount.py": "3cd0185ec75ccd9f",
    "0022_contract_edits.py": "f07f8adf5923d5e3",
    "0023_posted_evidence_kept.py": "29edf2a6479f22b5",
}


def test_released_migrations_are_as_released():
    edited = [name for name, digest in RELEASED.items()
              if hashlib.sha256((VERSIONS / name).read_bytes()).hexdigest()[:16] != digest]
    assert not edited, f"released migrations edited: {edited}; write a new revision instead"


def test_every_revision_is_either_released_or_the_newest():
    """A new revision not yet listed is fine; two would mean one landed without its digest."""
    unlisted = sorted(p.name for p in VERSIONS.glob("0*.py") if p.name not in RELEASED)
    assert len(unlisted) <= 1, f"add the digests of the released revisions {unlisted[:-1]} to RELEASED"
