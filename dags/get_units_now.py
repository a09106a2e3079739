"""
### get_units_now — "Get Units Now" for one service

Manual only. Counts the agents in the service's scope in VSA right now (cheap: one `$top=1`
query reading `TotalRecords`, or a page through the scope when exclusions apply), sets the
service's units and, when they differ, records a unit change effective today (billing
timezone) with source `get_units_now`; **notify** then mails the change to the contract's
recipients (`smtp_default`). Param: `service_id`.

An input error (unknown service, a service not counted in VSA or not active today) fails the
count at once; VSA or database trouble is retried. **notify** runs after a failure too, and
delivers the data team's alert; the run is then failed (`fail_if_work_failed`).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from data_team_alerts import alert_data_team
from run_states import fail_fast, fail_run_if_work_failed, run_params


@dag(
    dag_id="get_units_now",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["agent-billing", "vsa", "manual"],
    doc_md=__doc__,
    default_args={
        "owner": "account-management",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "execution_timeout": timedelta(minutes=10),
        "on_failure_callback": alert_data_team,
    },
    params={"service_id": Param(type="string", minLength=1, description="The service to count now.")},
)
def get_units_now():
    @task
    @fail_fast
    def count_service_now() -> dict:
        from agent_billing.settings import get_settings
        from agent_billing.sync.units_now import get_units_now as run
        from vsa_hook import VsaHook
        from warehouse_hook import WarehouseHook

        service_id = run_params(get_current_context())["service_id"]
        with VsaHook().get_conn() as client:
            result = run(WarehouseHook().get_conn(), client, service_id, tz=get_settings().tz)
        return {
            "service_id": result.service_id,
            "units_before": result.units_before,
            "units_after": result.units_after,
            "effective_date": result.effective_date.isoformat(),
            "change_recorded": result.change_recorded,
            "replaced": list(result.replaced) if result.replaced else None,  # today's earlier press change
        }

    @task(trigger_rule="all_done")
    @fail_fast
    def notify() -> dict:
        """Send the mail a change queued (and anything else waiting in the outbox)."""
        from outbox_delivery import deliver_pending_mail

        return deliver_pending_mail()

    count_service_now() >> notify()
    fail_run_if_work_failed()  # last: downstream of every task above


get_units_now()
