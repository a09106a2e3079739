"""Read Airflow-style connections from ``AIRFLOW_CONN_<ID>`` without importing Airflow.

The command line and the Airflow hooks share one setting per system: the same
``AIRFLOW_CONN_VSA_DEFAULT`` / ``AIRFLOW_CONN_BILLING_WAREHOUSE`` / ``AIRFLOW_CONN_SMTP_DEFAULT``
variable, in Airflow's URI form (``http://user:token@host:port/?page_size=100``) or JSON form
(``{"conn_type": "http", "host": "https://vsa.example", "login": ..., "password": ...}``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from agent_billing.errors import ConfigurationError


class ConnectionNotFound(ConfigurationError, LookupError):
    """No ``AIRFLOW_CONN_<ID>`` variable is set for a connection id."""


@dataclass(frozen=True)
class ConnectionInfo:
    """The fields of an Airflow connection that this project uses."""

    conn_id: str
    conn_type: str = ""
    host: str = ""
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    schema: str = ""
    port: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    uri: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:  # never show the password
        return (
            f"ConnectionInfo(conn_id={self.conn_id!r}, conn_type={self.conn_type!r}, "
            f"host={self.host!r}, login={self.login!r}, port={self.port!r})"
        )


def env_var_name(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def get_connection(conn_id: str) -> ConnectionInfo:
    """Parse ``AIRFLOW_CONN_<CONN_ID>`` (URI or JSON form), as Airflow does."""
    raw = os.environ.get(env_var_name(conn_id))
    if not raw:
        raise ConnectionNotFound(
            f"connection {conn_id!r} is not configured: set {env_var_name(conn_id)} "
            "(URI or JSON form, as for Airflow)"
        )
    return parse_connection(conn_id, raw)


def parse_connection(conn_id: str, raw: str) -> ConnectionInfo:
    raw = raw.strip()
    if raw.startswith("{"):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{env_var_name(conn_id)} is not valid JSON: {exc.msg}") from None
        extra = data.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra) if extra.strip() else {}
        port = data.get("port")
        return ConnectionInfo(
            conn_id=conn_id,
            conn_type=data.get("conn_type", ""),
            host=data.get("host") or "",
            login=data.get("login"),
            password=data.get("password"),
            schema=data.get("schema") or "",
            port=int(port) if port not in (None, "") else None,
            extra=dict(extra),
        )
    parts = urlsplit(raw)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    extra: dict[str, Any]
    if "__extra__" in query:
        extra = json.loads(query.pop("__extra__"))
    else:
        extra = query
    path = unquote(parts.path)
    return ConnectionInfo(
        conn_id=conn_id,
        conn_type=parts.scheme.replace("-", "_"),
        host=unquote(parts.hostname or ""),
        login=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        schema=path[1:] if path.startswith("/") else path,
        port=parts.port,
        extra=extra,
        uri=raw,
    )


def as_bool(value: Any, default: bool) -> bool:
    """Interpret a connection extra as a boolean ("false", "0", False ... are false)."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in {"false", "0", "no", "off"}
