"""Airflow connections as ``agent_billing.connections.ConnectionInfo``, for the core package.

Tasks resolve connections through Airflow (environment, secrets backends or the metadata
database) and hand the core plain values, so the core never imports Airflow.
"""

from __future__ import annotations

import os

from agent_billing.connections import ConnectionInfo


def connection_info(conn_id: str) -> ConnectionInfo:
    """The connection; one that is not defined (``ConnectionNotFound``) or that Airflow cannot
    read is a ``ConfigurationError`` (an input error: the task fails at once instead of
    spending its retries on it)."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.sdk import BaseHook

    from agent_billing.connections import ConnectionNotFound, env_var_name, parse_connection
    from agent_billing.errors import ConfigurationError

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        if raw := os.environ.get(env_var_name(conn_id), "").strip():
            # Set but unreadable: Airflow logs why at DEBUG only and calls it undefined. The
            # command line's parser names the field at fault (never the password).
            parse_connection(conn_id, raw)
            raise ConfigurationError(
                f"{env_var_name(conn_id)} is set, but Airflow cannot read it as a connection "
                "(URI or JSON form; README 'Configuration')"
            ) from None
        raise ConnectionNotFound(
            f"the Airflow connection {conn_id!r} is not defined: add it (Admin > Connections, or "
            f"{env_var_name(conn_id)}; README 'Configuration')"
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
    from agent_billing.connections import ConnectionNotFound

    try:
        return connection_info(conn_id)
    except ConnectionNotFound:  # a malformed one is an error all the same
        return None
