"""Airflow connections as ``agent_billing.connections.ConnectionInfo``, for the core package.

Tasks resolve connections through Airflow (environment, secrets backends or the metadata
database) and hand the core plain values, so the core never imports Airflow.
"""

from __future__ import annotations

from agent_billing.connections import ConnectionInfo


def connection_info(conn_id: str) -> ConnectionInfo:
    """The connection; one that is not defined is a ``ConfigurationError`` (an input error:
    the task fails at once instead of spending its retries on it)."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.sdk import BaseHook

    from agent_billing.errors import ConfigurationError

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise ConfigurationError(
            f"the Airflow connection {conn_id!r} is not defined: add it (Admin > Connections, or "
            f"AIRFLOW_CONN_{conn_id.upper()}; README 'Configuration')"
        ) from None
    return ConnectionInfo(
        conn_id=conn_id,
        conn_type=conn.conn_type or "",
        host=conn.host or "",
        login=conn.login,
        password=conn.password,
        schema=conn.schema or "",
        port=conn.port,
        extra=conn.extra_dejson,
    )


def optional_connection_info(conn_id: str) -> ConnectionInfo | None:
    """The connection, or None when it is not defined (e.g. no SMTP in the embedded demo)."""
    from agent_billing.errors import ConfigurationError

    try:
        return connection_info(conn_id)
    except ConfigurationError:  # not defined
        return None
