"""The billing warehouse: engine, migrations and small helpers shared by sync and billing."""

from agent_billing.warehouse.engine import connect_warehouse, warehouse_url
from agent_billing.warehouse.migrate import upgrade

__all__ = ["connect_warehouse", "upgrade", "warehouse_url"]
