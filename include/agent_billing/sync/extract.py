"""Extract step: read orgs, machine groups, agents, views and view members from VSA into a landing.

Each collection is read with :meth:`VsaClient.extract`, which re-reads it from scratch when
records moved during paging; the landing file is rewritten on each such pass, so what lands
holds exactly the server's ``TotalRecords`` distinct records, and the manifest records that
``TotalRecords`` beside the count written.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Protocol

from agent_billing.sync.landing import LandingExists, LandingStage, RawLanding

log = logging.getLogger(__name__)

COLLECTIONS = (
    ("orgs.jsonl.gz", "orgs"),
    ("machine_groups.jsonl.gz", "machine_groups"),
    ("agents.jsonl.gz", "agents"),
    ("views.jsonl.gz", "views"),
)


class VsaClientLike(Protocol):
    base_url: str
    user: str

    def extract(self, resource: str, consume, *, filter: str | None = None, view_id: str | None = None) -> Any: ...

    def close(self) -> None: ...


def land_from_vsa(
    client: VsaClientLike,
    landing: RawLanding,
    view_ids: list[str],
    *,
    observed_at: datetime,
    late_observation: bool = False,
) -> dict[str, Any]:
    """Extract everything the date needs and land it atomically; return the manifest.

    When another extract of the same date lands first (two runs of a date at once), its
    landing is kept and used: the date is landed, which is what both runs wanted.
    """
    try:
        with landing.staging() as stage:
            stage.meta = {
                "observed_at": observed_at.isoformat(),
                "source": client.base_url,
                "late_observation": late_observation,
            }
            for name, resource in COLLECTIONS:
                _land(client, stage, name, resource)
            for view_id in view_ids:
                _land(client, stage, f"agents_in_view/{view_id}.jsonl.gz", "agents_in_view", view_id=view_id)
    except LandingExists as exc:
        log.warning("%s: using that landing", exc)
        return landing.verify()
    manifest = landing.manifest()
    counts = {name: entry["records"] for name, entry in manifest["files"].items()}
    log.info("landed %s in %s: %s", landing.snapshot_date, landing.path, counts)
    return manifest


def _land(client: VsaClientLike, stage: LandingStage, name: str, resource: str, view_id: str | None = None) -> None:
    def consume(records) -> int:
        # The server's TotalRecords, kept beside the count written: the quality gate compares them.
        count = stage.write_lines(name, (record.raw for record in records))
        stage.files[name]["total_records"] = records.total
        return count

    count = client.extract(resource, consume, view_id=view_id)
    log.info("extracted %s: %d records", name, count)
