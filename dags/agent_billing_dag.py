"""
### agent_billing — post what is billable as of each snapshot date

Triggered by the `vsa_snapshot` asset that `vsa_asset_sync` emits after each good night
(and by its backfills), or by hand with the param `as_of` (YYYY-MM-DD).

1. **resolve_dates** — the `as_of` param if given, else the `snapshot_date` of every
   triggering asset event (events coalesce: one run may carry several, in any order; they
   are deduplicated and sorted);
2. **bill** — for each date in ascending order, a billing run: per contract, expected
   ledger − posted ledger. On a contract's invoice date its invoice is posted (the month's
   normal lines, missed months, and every unposted prorated or adjustment line effective by
   then); between invoice dates, and always for `review` contracts, the lines wait in
   `billing_review`. Runs are idempotent: a re-run or an old date posts nothing twice.

Warehouse: connection `billing_warehouse`. By hand: `agent-billing bill --as-of D`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task

from agent_billing_assets import SNAPSHOT_ASSET


@dag(
    dag_id="agent_billing",
    schedule=[SNAPSHOT_ASSET],
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["billing", "agent-billing"],
    doc_md=__doc__,
    default_args={
        "owner": "finance",
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=30),
        "execution_timeout": timedelta(hours=2),
    },
    params={
        "as_of": Param(
            None, type=["null", "string"], format="date",
            description="Bill as of this date (YYYY-MM-DD) instead of the triggering snapshot dates.",
        ),
    },
)
def agent_billing():
    @task(retries=0, execution_timeout=timedelta(minutes=5))
    def resolve_dates() -> list[str]:
        """The dates to bill; a run with none fails at once (retrying would not help)."""
        from airflow.sdk.exceptions import AirflowFailException

        from agent_billing.billing.trigger import billing_dates
        from agent_billing.errors import UserError

        ctx = get_current_context()
        events = (ctx.get("triggering_asset_events") or {}).get(SNAPSHOT_ASSET, [])
        try:
            dates = billing_dates(ctx["params"].get("as_of"), events)
        except UserError as exc:
            raise AirflowFailException(str(exc)) from None
        return [day.isoformat() for day in dates]

    @task
    def bill(dates: list[str]) -> list[dict]:
        from datetime import date

        from agent_billing.billing import run_billing
        from warehouse_hook import WarehouseHook

        engine = WarehouseHook().get_conn()
        results = []
        for day in dates:
            summary = run_billing(engine, date.fromisoformat(day))
            results.append({
                "as_of": day,
                "contracts": len(summary.contracts),
                "invoices_posted": summary.invoices_posted,
                "lines_posted": summary.lines_posted,
                "pending_lines": summary.pending_lines,
            })
        engine.dispose()
        return results

    bill(resolve_dates())


agent_billing()
