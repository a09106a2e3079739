"""``WarehouseHook``: the billing warehouse (SQLite or PostgreSQL) from ``billing_warehouse``."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook


class WarehouseHook(BaseHook):
    """SQLAlchemy engine of the billing warehouse; the connection holds a SQLAlchemy URL
    (``sqlite:////abs/path.db`` or ``postgresql://user@host:5432/db``)."""

    conn_name_attr = "warehouse_conn_id"
    default_conn_name = "billing_warehouse"
    conn_type = "billing_warehouse"
    hook_name = "Billing warehouse"

    def __init__(self, warehouse_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.warehouse_conn_id = warehouse_conn_id

    def get_url(self) -> str:
        from agent_billing.warehouse.engine import url_from_connection
        from airflow_connections import connection_info

        return url_from_connection(connection_info(self.warehouse_conn_id))

    def get_conn(self, *, check_schema: bool = True):
        """A SQLAlchemy Engine (the warehouse is always used through SQLAlchemy) on a warehouse
        at this code's schema: a missing or older schema is ``SchemaOutOfDate``, an input error
        naming ``agent-billing db upgrade`` (one query on Alembic's revision). The failure
        callbacks and ``notify`` take any revision (``check_schema=False``): the alert about a
        schema out of date can still be queued and sent with an older one; a missing warehouse
        or schema is refused all the same (a notify on a mistyped SQLite path created an empty
        file there and failed on "no such table", retried)."""
        from agent_billing.warehouse import connect_warehouse
        from agent_billing.warehouse.migrate import require_current_schema

        engine = connect_warehouse(self.get_url())
        try:
            require_current_schema(engine, any_revision=not check_schema)
        except Exception as exc:
            engine.dispose()
            self._refuse_wrong_setting(engine, exc)
            raise
        except BaseException:
            engine.dispose()
            raise
        return engine

    def _refuse_wrong_setting(self, engine, exc: Exception) -> None:
        """A refused login, a database that does not exist or a file that is no SQLite database
        is the connection's mistake, the same on every try: an input error (no retries), as
        the command line's exit code 2."""
        from agent_billing.errors import ConfigurationError
        from agent_billing.warehouse.engine import safe_url
        from agent_billing.warehouse.errors import driver_error, wrong_setting

        if wrong_setting(exc):
            cause = " ".join(part.strip() for part in str(driver_error(exc)).splitlines() if part.strip())
            raise ConfigurationError(
                f"cannot use the warehouse {safe_url(engine.url)}: {cause} (fix the Airflow connection "
                f"{self.warehouse_conn_id!r}; README 'Configuration')"
            ) from None

    def test_connection(self) -> tuple[bool, str]:
        from sqlalchemy import text

        try:
            with self.get_conn().connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - the UI shows the message
            return False, str(exc)
        return True, "warehouse reachable"
