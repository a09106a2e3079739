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
from decimal import Decimal, InvalidOperation
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
    """The connection a variable holds; a malformed one (a port that is no number, extras that
    are no JSON object, a field of the wrong type) is a ``ConfigurationError`` naming the
    variable and the field, never the password."""
    raw = raw.strip()
    if raw.startswith("{"):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{env_var_name(conn_id)} is not valid JSON: {exc.msg}") from None
    try:
        return _from_json(conn_id, data) if raw.startswith("{") else _from_uri(conn_id, raw)
    except (ValueError, TypeError, AttributeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc).splitlines()[0]
        raise ConfigurationError(
            f"{env_var_name(conn_id)} is not a valid connection: {reason} (README 'Configuration')"
        ) from None


def _whole_number(value: Any, what: str) -> int:
    """A JSON number or a string of one (5432, 5432.0, "5432"), else a ``ValueError`` naming it."""
    try:
        number = None if isinstance(value, bool) else Decimal(str(value).strip())
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite() or number != number.to_integral_value():
        raise ValueError(f"{what} {value!r} is not a whole number")
    return int(number)


def _json_object(value: Any, what: str) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else {}
    if not isinstance(value, dict):
        raise TypeError(f"{what} must be a JSON object, not {type(value).__name__}")
    return value


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{key} must be text, not {type(value).__name__}")
    return value


def _from_json(conn_id: str, data: Any) -> ConnectionInfo:
    if not isinstance(data, dict):
        raise TypeError(f"the JSON form must be an object, not {type(data).__name__}")
    extra = _json_object(data.get("extra") or {}, "extra")
    port = data.get("port")
    if port not in (None, ""):
        port = _whole_number(port, "port")
        if not 0 < port < 65536:
            raise ValueError(f"port {port} is out of range 1-65535")
    return ConnectionInfo(
        conn_id=conn_id,
        conn_type=_text(data, "conn_type") or "",
        host=_text(data, "host") or "",
        login=_text(data, "login"),
        password=_text(data, "password"),
        schema=_text(data, "schema") or "",
        port=port if port not in (None, "") else None,
        extra=dict(extra),
    )


#: Words that make a connection field or URL parameter a secret (libpq takes ``password`` and
#: ``sslpassword`` as URL parameters too), hidden in every message like the password.
SECRET_WORDS = ("password", "passphrase", "secret", "token")


def is_secret_key(name: str) -> bool:
    return any(word in name.lower() for word in SECRET_WORDS)


def _from_uri(conn_id: str, raw: str) -> ConnectionInfo:
    try:
        parts = urlsplit(raw)
    except ValueError:  # never echo it: urlsplit's message quotes the host part, password included
        if raw.isascii():  # "Invalid IPv6 URL": a bracket outside an IPv6 host
            raise ValueError(
                "the host part holds [ or ] outside an IPv6 address (a password holding one must be "
                "percent-encoded)"
            ) from None
        raise ValueError(
            "the host part holds a character that Unicode normalisation turns into / ? # @ or : "
            "(such as a full-width @; a password holding one must be percent-encoded)"
        ) from None
    if parts.netloc.count("@") > 1:  # never echo it: readers split it at different '@'s
        raise ValueError("the host part holds more than one '@' (a password holding / # ? @ or : must be percent-encoded)")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    extra: dict[str, Any]
    if "__extra__" in query:
        extra = _json_object(query.pop("__extra__"), "__extra__")
    else:
        extra = query
    path = unquote(parts.path)
    try:
        port = parts.port
    except ValueError:  # never echo it: an unencoded '#', '/' or '?' puts the password there
        raise ValueError(
            "the port is not a number from 0 to 65535 (a password holding / # ? @ or : must be "
            "percent-encoded)"
        ) from None
    return ConnectionInfo(
        conn_id=conn_id,
        conn_type=parts.scheme.replace("-", "_"),
        host=unquote(parts.hostname or ""),
        login=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        schema=path[1:] if path.startswith("/") else path,
        port=port,
        extra=extra,
        uri=raw,
    )


_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


def as_bool(value: Any, default: bool, what: str) -> bool:
    """A connection extra as a boolean (true/false, 1/0, yes/no, on/off; a JSON bool). Any other
    value is refused, naming ``what``: read as true, ``allow_plain_http: "nope"`` sent the VSA
    token in clear text."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word not in _TRUE | _FALSE:
        raise ConfigurationError(f"{what}={value!r} is neither true nor false (write true or false)")
    return word in _TRUE
