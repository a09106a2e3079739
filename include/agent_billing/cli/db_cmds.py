"""``agent-billing db upgrade``: create or upgrade the warehouse schema."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="warehouse schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="create or upgrade the warehouse (Alembic)")
    up.add_argument("--revision", default="head")
    up.set_defaults(handler=_upgrade)


def _upgrade(args: argparse.Namespace) -> int:
    from agent_billing.warehouse import connect_warehouse, upgrade
    from agent_billing.warehouse.engine import safe_url
    from agent_billing.warehouse.migrate import current_revision

    engine = connect_warehouse()
    upgrade(engine, args.revision)
    print(f"warehouse {safe_url(engine)} at revision {current_revision(engine)}")
    return 0
