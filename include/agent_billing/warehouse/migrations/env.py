"""Alembic environment: the engine is handed in by ``agent_billing.warehouse.migrate``."""

from __future__ import annotations

from alembic import context

from agent_billing.warehouse.engine import connect_warehouse
from agent_billing.warehouse.migrate import quiet_alembic

quiet_alembic()
engine = context.config.attributes.get("engine") or connect_warehouse()

with engine.begin() as connection:
    context.configure(
        connection=connection,
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()
