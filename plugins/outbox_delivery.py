"""What the DAGs' ``notify`` tasks do: send the mail waiting in the outbox through Airflow's
``smtp_default`` (the command line does the same with ``AIRFLOW_CONN_SMTP_DEFAULT``)."""

from __future__ import annotations


def deliver_pending_mail(only: str | None = None) -> dict:
    """Send what waits (``only``: that one message). Mail waiting while ``smtp_default`` is not
    defined is a configuration error: the task fails at once (a green run would hide that
    nobody gets the mail)."""
    from agent_billing.errors import ConfigurationError
    from agent_billing.settings import mail_settings
    from agent_billing.sync.notify import deliver_outbox
    from airflow_connections import optional_connection_info
    from warehouse_hook import WarehouseHook

    smtp = optional_connection_info("smtp_default")
    engine = WarehouseHook().get_conn(check_schema=False)  # the alerts of a failed run go out too
    try:
        result = deliver_outbox(engine, smtp, mail_settings().notify_from, only)  # the alerts of a bad setting too
    finally:
        engine.dispose()
    if smtp is None and result.waiting:
        raise ConfigurationError(
            f"{result.waiting} message(s) wait in notification_outbox, but the Airflow connection "
            "'smtp_default' is not defined: add it (README 'Configuration'); the next delivery sends them"
        )
    return {"sent": result.sent, "waiting": result.waiting}
