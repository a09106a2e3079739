"""What the DAGs' ``notify`` tasks do: send the mail waiting in the outbox through Airflow's
``smtp_default`` (the command line does the same with ``AIRFLOW_CONN_SMTP_DEFAULT``)."""

from __future__ import annotations


def deliver_pending_mail() -> dict:
    from agent_billing.settings import get_settings
    from agent_billing.sync.notify import deliver_outbox
    from airflow_connections import optional_connection_info
    from warehouse_hook import WarehouseHook

    engine = WarehouseHook().get_conn(check_schema=False)  # the alerts of a failed run go out too
    try:
        result = deliver_outbox(engine, optional_connection_info("smtp_default"), get_settings().notify_from)
    finally:
        engine.dispose()
    return {"sent": result.sent, "waiting": result.waiting}
