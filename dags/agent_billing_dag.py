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

3. **notify** — sends queued mail (failed contracts' alerts too), also after a failure.

A date beyond the billing horizon or a malformed date fails at once, without retries; contracts
that failed make `bill` fail after every other contract was billed on every date (what was
billed is kept in its XCom); it is retried only when every failure was the database's passing
trouble. The data team is alerted of any failed task, and the run is failed
(`fail_if_work_failed`). Warehouse: connection `billing_warehouse`. By hand:
`agent-billing bill --as-of D`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task

from agent_billing_assets import SNAPSHOT_ASSET
from data_team_alerts import alert_data_team
from run_states import fail_fast, fail_run_if_work_failed, run_params


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
        "on_failure_callback": alert_data_team,
    },
    params={
        "as_of": Param(
            None, type=["null", "string"], format="date",
            description="Bill as of this date (YYYY-MM-DD) instead of the triggering snapshot dates.",
        ),
    },
)
def agent_billing():
    @task(execution_timeout=timedelta(minutes=5))
    @fail_fast
    def resolve_dates() -> list[str]:
        """The dates to bill; a run with none fails at once (retrying would not help)."""
        from agent_billing.billing.trigger import billing_dates

        ctx = get_current_context()
        events = (ctx.get("triggering_asset_events") or {}).get(SNAPSHOT_ASSET, [])
        return [day.isoformat() for day in billing_dates(run_params(ctx).get("as_of"), events)]

    @task
    @fail_fast
    def bill(dates: list[str]) -> list[dict]:
        """Bill the dates in order, every contract on every date even when one failed (each
        failure is alerted by run_billing); stop only at a date beyond the horizon. Keep what
        was billed in XCom, then fail naming every failed contract and date (retried when all
        were the database's passing trouble: billing is idempotent)."""
        from datetime import date

        from agent_billing.billing import (
            BillingHorizonError,
            BillingRunFailed,
            failure_of,
            run_billing,
        )
        from warehouse_hook import WarehouseHook

        engine = WarehouseHook().get_conn()
        summaries = []
        try:
            for day in dates:
                summaries.append(run_billing(engine, date.fromisoformat(day)))
            if failure := failure_of(summaries):
                raise failure
            return [s.to_xcom() for s in summaries]
        except Exception as exc:  # a failed task pushes no return value: keep what was billed
            get_current_context()["ti"].xcom_push(key="return_value", value=[s.to_xcom() for s in summaries])
            if isinstance(exc, BillingHorizonError) and (earlier := failure_of(summaries)):
                raise BillingRunFailed(f"{earlier}; then {exc}") from exc  # name both
            raise
        finally:
            engine.dispose()

    @task(trigger_rule="all_done", execution_timeout=timedelta(minutes=15))
    @fail_fast
    def notify() -> dict:
        """Send queued mail (alerts about failed contracts too) even when billing failed."""
        from outbox_delivery import deliver_pending_mail

        return deliver_pending_mail()

    dates = resolve_dates()
    billed = bill(dates)
    delivered = notify()
    billed >> delivered
    fail_run_if_work_failed()  # last: downstream of every task above


agent_billing()
