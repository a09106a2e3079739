"""The ``agent-billing`` command line: every pipeline step, runnable without a scheduler.

Each command group lives in its own module with a ``register(subparsers)`` function; heavy
imports happen inside the command handlers so that ``agent-billing --help`` stays instant.
Installed extensions add commands through the ``agent_billing.commands`` entry point group:
the development tools (``dev/pyproject.toml``) add ``vsa-sim`` and ``demo`` that way, and the
production image, which leaves them out, simply has no such commands.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from importlib.metadata import entry_points

from agent_billing.errors import UserError

COMMAND_MODULES = (
    "agent_billing.cli.db_cmds",
    "agent_billing.cli.vsa_cmds",
    "agent_billing.cli.contracts_cmds",
    "agent_billing.cli.sync_cmds",
    "agent_billing.cli.billing_cmds",
)
COMMAND_ENTRY_POINTS = "agent_billing.commands"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent-billing",
        description="Bill MSP customers per Kaseya VSA agent, prorated by day.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for entry_point in sorted(entry_points(group=COMMAND_ENTRY_POINTS), key=lambda e: e.name):
        entry_point.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"agent-billing {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
