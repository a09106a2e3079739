"""Airflow hook for Kaseya VSA: a :class:`~agent_billing.vsa.VsaClient` from an Airflow connection.

The connection (default ``vsa_default``): host = VSA base URL, login = user, password = the
user's personal access token; extras ``page_size``, ``max_concurrency``, ``timeout``,
``verify_ssl`` (and the retry settings the client accepts). Outside Airflow the command line
reads the same ``AIRFLOW_CONN_VSA_DEFAULT`` through ``VsaClient.from_env``.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from agent_billing.vsa import VsaClient
from airflow_connections import connection_info


class VsaHook(BaseHook):
    """Interact with the Kaseya VSA REST API.

    :param vsa_conn_id: the Airflow connection holding the VSA base URL, user and PAT.
    """

    conn_name_attr = "vsa_conn_id"
    default_conn_name = "vsa_default"
    conn_type = "vsa"
    hook_name = "Kaseya VSA"

    def __init__(self, vsa_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.vsa_conn_id = vsa_conn_id

    def get_conn(self, **overrides: Any) -> VsaClient:
        """A new client for the connection (resolved now, so edits in the UI apply at once);
        ``overrides`` replace the connection's extras (e.g. ``max_concurrency=2``)."""
        return VsaClient.from_connection(connection_info(self.vsa_conn_id), **overrides)

    def test_connection(self) -> tuple[bool, str]:
        """Authenticate and count the organizations the user can see (the UI "Test" button).

        One try per request and a short timeout: the button must answer within seconds.
        """
        try:
            with self.get_conn(max_retries=0, timeout=10.0) as client:
                client.authenticate()
                orgs = client.count("orgs")
        except Exception as exc:  # noqa: BLE001 - the UI shows any failure as text
            return False, str(exc)
        return (
            True,
            f"Connected to {client.base_url} as {client.user}: {orgs} organizations visible",
        )

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema"],
            "relabeling": {
                "host": "Base URL",
                "login": "User",
                "password": "Personal access token",
            },
            "placeholders": {
                "host": "https://vsa.example.com",
                "login": "billing.integrator",
                "extra": '{"page_size": 100, "max_concurrency": 8, "timeout": 30, '
                '"verify_ssl": true}',
            },
        }
