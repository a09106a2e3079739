"""``agent-billing db upgrade``: create or upgrade the warehouse schema."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="warehouse schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="create or upgrade the warehouse (Alembic)")
    up.add_argument("--revision", default="head")
    # it is what fixes the schema; it reads no setting, and a deployment's first step must not
    # stop on a bad one (the DAGs' import errors and the tasks name it)
    up.set_defaults(handler=_upgrade, check_schema=False, check_settings=False)


def _upgrade(args: argparse.Namespace) -> int:
    from agent_billing.warehouse import connect_warehouse, upgrade
    from agent_billing.warehouse.engine import safe_url
    from agent_billing.warehouse.migrate import current_revision

    engine = connect_warehouse()
    before = current_revision(engine)
    upgrade(engine, args.revision)
    after = current_revision(engine)
    change = "unchanged" if before == after else f"upgraded from {before or 'an empty database'}"
    print(f"warehouse {safe_url(engine)} at revision {after} ({change})")
    return 0
