"""The Airflow Asset shared by the producer (``vsa_asset_sync``) and the consumer (``agent_billing``).

Each event's ``extra`` carries ``{"snapshot_date": "YYYY-MM-DD"}``. Kept in ``plugins/`` (on
Airflow's ``sys.path``) so both DAG files import the very same object; cheap to import.
"""

from __future__ import annotations

from airflow.sdk import Asset

SNAPSHOT_ASSET = Asset(name="vsa_snapshot", uri="agent-billing://warehouse/vsa_snapshot")
