"""The quality gate of a loaded snapshot, with Great Expectations 1.x (imported lazily: it is slow).

Checks, in the database through GX's SQL data source (the agents are never read into Python):
agent ids present and unique; each agent's machine group known and its org the group's org;
``Online`` within VSA's documented codes. And per landed file (a handful of rows, checked in
pandas): its record count non-negative and equal to the server's TotalRecords, and the rows
loaded for the date equal to it, so a short or tampered landing fails here.

Results are stored in ``quality_results``; a failure raises ``QualityGateFailed`` naming each
failed expectation and on how many rows it failed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from agent_billing.errors import UserError
from agent_billing.quality.sources import agents_of_date_query, loaded_rows
from agent_billing.sync.landing import RawLanding
from agent_billing.sync.runs import lock_snapshot_date

log = logging.getLogger(__name__)

ONLINE_CODES = (0, 1, 2, 11, 12, 198, 199)
#: How a failed gate's record in ``sync_runs`` begins (a backstop alert must not overwrite it).
GATE_FAILED_PREFIX = "quality gate failed for snapshot"


class QualityGateFailed(UserError):
    """The snapshot failed one or more expectations; nothing downstream may run."""


@dataclass(frozen=True)
class ExpectationResult:
    expectation: str
    success: bool
    element_count: int
    unexpected_count: int
    details: str = ""
    where: tuple[str, ...] = ()  # the landed files an endpoint expectation failed on

    def describe(self) -> str:
        text_ = f"{self.expectation} failed on {self.unexpected_count} of {self.element_count} rows"
        return text_ + (f" ({'; '.join(self.where)})" if self.where else "")


def validate_snapshot(engine: Engine, landing: RawLanding, online_codes_added: tuple[int, ...] = ()) -> list[ExpectationResult]:
    """Run the gate on the date's snapshot; store the results; raise if any expectation failed.
    ``online_codes_added``: status codes accepted beyond VSA's documented ones
    (``AGENT_BILLING_EXTRA_ONLINE_CODES``, for a VSA build that added one)."""
    d = landing.snapshot_date
    with engine.connect() as conn:
        loaded = loaded_rows(conn, d)
    codes = (*ONLINE_CODES, *online_codes_added)
    results = _run_suites(engine, d, _endpoints(landing.manifest(), loaded), loaded.get("agents.jsonl.gz", 0), codes)
    with engine.begin() as conn:
        store_results(conn, d, results)
    failed = [r for r in results if not r.success]
    if failed:
        raise QualityGateFailed(
            f"{GATE_FAILED_PREFIX} {d}: " + "; ".join(r.describe() for r in failed)
        )
    agents = loaded.get("agents.jsonl.gz", 0)
    log.info("quality gate passed for %s: %d expectations on %d agents", d, len(results), agents)
    return results


def _endpoints(manifest: dict[str, Any], loaded: dict[str, int]) -> list[dict[str, Any]]:
    """One row per landed file: the manifest's records, the server's TotalRecords, rows loaded."""
    rows = []
    for name, entry in sorted(manifest["files"].items()):
        total = entry.get("total_records")
        rows.append({
            "file": name,
            "records": entry["records"],
            "total_records": entry["records"] if total is None else total,
            "loaded": loaded.get(name, 0),
        })
    return rows


def _agent_expectations(gxe, online_codes: tuple[int, ...]) -> list:
    return [
        gxe.ExpectColumnValuesToNotBeNull(column="agent_id"),
        gxe.ExpectColumnValuesToBeUnique(column="agent_id"),
        gxe.ExpectColumnValuesToBeInSet(column="group_known", value_set=[1]),
        gxe.ExpectColumnPairValuesToBeEqual(column_A="org_id", column_B="group_org_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="online"),  # the in-set check skips nulls
        gxe.ExpectColumnValuesToBeInSet(column="online", value_set=list(online_codes)),
    ]


def _endpoint_expectations(gxe) -> list:
    return [
        gxe.ExpectColumnValuesToBeBetween(column="records", min_value=0),
        gxe.ExpectColumnPairValuesToBeEqual(column_A="records", column_B="total_records"),
        gxe.ExpectColumnPairValuesToBeEqual(column_A="loaded", column_B="records"),
    ]


def _run_suites(
    engine: Engine, d: date, endpoints: list[dict[str, Any]], agents_loaded: int, online_codes: tuple[int, ...]
) -> list[ExpectationResult]:
    import pandas as pd

    from agent_billing.quality.gx_context import dispose, gxe, quiet_context, warehouse_source

    context = quiet_context()
    warehouse = warehouse_source(context, f"warehouse_{d:%Y%m%d}", engine)
    try:
        agents = warehouse.add_query_asset(
            name="agents", query=agents_of_date_query(engine, d)
        ).add_batch_definition_whole_table(name="agents")
        # A night that passes (nearly every night) needs only the verdicts: GX then skips the
        # queries behind the counts and samples (for the uniqueness check, a second pass over
        # the night's ids; the gate takes about 1.7 s instead of 2.8 s at 1M agents). Each
        # expectation then checked every agent row of the date and found none unexpected.
        # A night that fails is checked again for what failed, on how many rows, with samples.
        results = _validate(context, agents, "agents", _agent_expectations(gxe, online_codes), d, "BOOLEAN_ONLY")
        if all(r.success for r in results):
            results = [replace(r, element_count=agents_loaded) for r in results]
        else:
            by_agent = {"result_format": "SUMMARY", "unexpected_index_column_names": ["agent_id"]}
            results = _validate(context, agents, "agents", _agent_expectations(gxe, online_codes), d, by_agent, run="detail")
    finally:
        dispose(warehouse)
    landed = (
        context.data_sources.add_pandas(name=f"landing_{d:%Y%m%d}")
        .add_dataframe_asset(name="endpoints")
        .add_batch_definition_whole_dataframe(name="endpoints")
    )
    frame = pd.DataFrame(endpoints, columns=["file", "records", "total_records", "loaded"])
    by_file = {"result_format": "SUMMARY", "unexpected_index_column_names": ["file"]}
    return results + _validate(
        context, landed, "endpoints", _endpoint_expectations(gxe), d, by_file, {"dataframe": frame}
    )


def _validate(
    context, batch_definition, table: str, expectations: list, d: date, result_format,
    batch_parameters: dict | None = None, run: str = "",
) -> list[ExpectationResult]:
    """Run one suite on one batch definition (the batch is built once: for the agents, GX's
    temporary table of the date's rows is created once). ``run`` tells apart a second run of
    the same table's suite in one context."""
    from agent_billing.quality.gx_context import gx

    name = f"{table}_{d:%Y%m%d}{'_' + run if run else ''}"
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch_definition, suite=suite)
    )
    outcome = validation.run(batch_parameters=batch_parameters, result_format=result_format)
    return [_summarise(table, r.to_json_dict()) for r in outcome.results]


class GateError(RuntimeError):
    """The gate could not evaluate an expectation (a database or GX error), unlike a failed one."""


def _raised(result: dict[str, Any]) -> str | None:
    """The message of an error GX caught while computing the expectation, if any."""
    info = result.get("exception_info") or {}
    for entry in [info, *(v for v in info.values() if isinstance(v, dict))]:
        if entry.get("raised_exception"):
            return str(entry.get("exception_message") or "unknown error").strip().splitlines()[-1]
    return None


def _summarise(table: str, result: dict[str, Any]) -> ExpectationResult:
    config = result["expectation_config"]
    if error := _raised(result):
        raise GateError(f"quality gate could not evaluate {table}.{config['type']}: {error}")
    kwargs = {k: v for k, v in config["kwargs"].items() if k in ("column", "column_A", "column_B")}
    label = f"{table}.{config['type']}({', '.join(str(v) for v in kwargs.values())})"
    info = result.get("result") or {}
    by_row = info.get("partial_unexpected_index_list") or []  # the file or agent of each, with its value
    sample = by_row or info.get("partial_unexpected_list") or []
    return ExpectationResult(
        expectation=label,
        success=bool(result["success"]),
        element_count=int(info.get("element_count") or 0),
        unexpected_count=int(info.get("unexpected_count") or 0),
        details=json.dumps(sample[:5], default=str) if sample else "",
        where=tuple(_where(row) for row in by_row[:WHERE_SHOWN]),
    )


WHERE_SHOWN = 3  # rows named in the one-line message (quality_results.details keeps five)


def _where(row: dict[str, Any]) -> str:
    """A failing row as the message names it: its landed file, or its agent (and value)."""
    if "file" in row:
        return str(row["file"])
    values = ", ".join(f"{k} {v}" for k, v in row.items() if k != "agent_id")
    return f"agent {row.get('agent_id')}" + (f": {values}" if values else "")


def store_results(conn: Connection, d: date, results: list[ExpectationResult]) -> None:
    """Replace the date's stored results. Two gates of one date (a retry and a backfill) store
    one after the other under the date's lock: each statement then sees the other's committed
    rows, where two interleaved DELETE + INSERT would collide on the key."""
    now = datetime.now(UTC)
    lock_snapshot_date(conn, d)
    conn.execute(text("DELETE FROM quality_results WHERE snapshot_date = :d"), {"d": d})
    conn.execute(
        text(
            "INSERT INTO quality_results (snapshot_date, expectation, success, element_count, "
            "unexpected_count, details, checked_at) VALUES (:d, :expectation, :success, "
            ":element_count, :unexpected_count, :details, :checked_at)"
        ),
        [
            {"d": d, "checked_at": now, "expectation": r.expectation, "success": r.success,
             "element_count": r.element_count, "unexpected_count": r.unexpected_count,
             "details": r.details}
            for r in results
        ],
    )
