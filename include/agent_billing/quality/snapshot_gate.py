"""The quality gate of a snapshot, with Great Expectations 1.x (imported lazily: it is slow).

Checks, on the loaded snapshot of one date: agent ids present and unique; each agent's
machine group known and its org the group's org; ``Online`` within VSA's documented codes;
each landed endpoint's record count equal to the server's TotalRecords and non-negative.
Results are stored in ``quality_results``; a failure raises ``QualityGateFailed`` naming each
failed expectation and on how many rows it failed.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Engine, text

from agent_billing.errors import UserError
from agent_billing.sync.landing import RawLanding

log = logging.getLogger(__name__)

ONLINE_CODES = (0, 1, 2, 11, 12, 198, 199)


class QualityGateFailed(UserError):
    """The snapshot failed one or more expectations; nothing downstream may run."""


@dataclass(frozen=True)
class ExpectationResult:
    expectation: str
    success: bool
    element_count: int
    unexpected_count: int
    details: str = ""

    def describe(self) -> str:
        return f"{self.expectation} failed on {self.unexpected_count} of {self.element_count} rows"


def validate_snapshot(engine: Engine, landing: RawLanding) -> list[ExpectationResult]:
    """Run the gate on the date's snapshot; store the results; raise if any expectation failed."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import pandas as pd

    d = landing.snapshot_date
    with engine.connect() as conn:
        agents = pd.read_sql_query(
            text(
                "SELECT a.agent_id, a.org_id, a.machine_group_id, a.online, "
                "g.machine_group_id AS known_group_id, g.org_id AS group_org_id "
                "FROM vsa_agents a LEFT JOIN vsa_machine_groups g "
                "ON g.snapshot_date = a.snapshot_date AND g.machine_group_id = a.machine_group_id "
                "WHERE a.snapshot_date = :d"
            ),
            conn,
            params={"d": d},
            dtype={"agent_id": "object", "org_id": "object", "group_org_id": "object"},
        )
    agents["group_known"] = agents["known_group_id"].notna()
    agents["group_org_id"] = agents["group_org_id"].where(agents["group_known"], agents["org_id"])
    manifest = landing.manifest()
    endpoints = pd.DataFrame(
        [
            {"file": name, "records": entry["records"], "total_records": entry.get("total_records")}
            for name, entry in sorted(manifest["files"].items())
        ]
    )
    endpoints["total_records"] = endpoints["total_records"].fillna(endpoints["records"])
    results = _run_suites(agents, endpoints, d)
    _store(engine, d, results)
    failed = [r for r in results if not r.success]
    if failed:
        raise QualityGateFailed(
            f"quality gate failed for snapshot {d}: " + "; ".join(r.describe() for r in failed)
        )
    log.info("quality gate passed for %s: %d expectations on %d agents", d, len(results), len(agents))
    return results


def _run_suites(agents, endpoints, d: date) -> list[ExpectationResult]:
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # quiet task logs and CLI
    source = context.data_sources.add_pandas(name=f"snapshot_{d:%Y%m%d}")
    suites = {
        "agents": (
            agents,
            [
                gxe.ExpectColumnValuesToNotBeNull(column="agent_id"),
                gxe.ExpectColumnValuesToBeUnique(column="agent_id"),
                gxe.ExpectColumnValuesToBeInSet(column="group_known", value_set=[True]),
                gxe.ExpectColumnPairValuesToBeEqual(column_A="org_id", column_B="group_org_id"),
                gxe.ExpectColumnValuesToNotBeNull(column="online"),  # the in-set check skips nulls
                gxe.ExpectColumnValuesToBeInSet(column="online", value_set=list(ONLINE_CODES)),
            ],
        ),
        "endpoints": (
            endpoints,
            [
                gxe.ExpectColumnValuesToBeBetween(column="records", min_value=0),
                gxe.ExpectColumnPairValuesToBeEqual(column_A="records", column_B="total_records"),
            ],
        ),
    }
    results: list[ExpectationResult] = []
    for name, (frame, expectations) in suites.items():
        batch = (
            source.add_dataframe_asset(name=name)
            .add_batch_definition_whole_dataframe(name=name)
            .get_batch(batch_parameters={"dataframe": frame})
        )
        suite = gx.ExpectationSuite(name=f"{name}_{d:%Y%m%d}", expectations=expectations)
        outcome = batch.validate(suite, result_format="SUMMARY")
        for r in outcome.results:
            results.append(_summarise(name, r.to_json_dict(), len(frame)))
    return results


def _summarise(table: str, result: dict[str, Any], rows: int) -> ExpectationResult:
    config = result["expectation_config"]
    kwargs = {k: v for k, v in config["kwargs"].items() if k in ("column", "column_A", "column_B")}
    label = f"{table}.{config['type']}({', '.join(str(v) for v in kwargs.values())})"
    info = result.get("result") or {}
    unexpected = info.get("unexpected_count")
    if unexpected is None:  # pair expectations report no count when they pass
        unexpected = 0 if result["success"] else rows
    sample = info.get("partial_unexpected_list") or []
    return ExpectationResult(
        expectation=label,
        success=bool(result["success"]),
        element_count=int(info.get("element_count") or rows),
        unexpected_count=int(unexpected),
        details=json.dumps(sample[:5], default=str) if sample else "",
    )


def _store(engine: Engine, d: date, results: list[ExpectationResult]) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM quality_results WHERE snapshot_date = :d"), {"d": d})
        conn.execute(
            text(
                "INSERT INTO quality_results (snapshot_date, expectation, success, element_count, "
                "unexpected_count, details, checked_at) VALUES (:d, :expectation, :success, "
                ":element_count, :unexpected_count, :details, :checked_at)"
            ),
            [{"d": d, "checked_at": now, **r.__dict__} for r in results],
        )
