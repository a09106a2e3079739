"""``agent-billing demo``: the main job end to end on the embedded default (``make demo``).

Registered as an ``agent_billing.commands`` entry point by ``dev/pyproject.toml``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="run the whole pipeline on the simulator for ~two months of nights")
    demo.add_argument("--home", default="data/demo", help="where the demo writes: a new or empty directory, or a home of an earlier demo "
             "run (emptied first); anything else is refused")
    demo.add_argument("--nights", type=_at_least_one, default=60)
    demo.add_argument("--orgs", type=_at_least_one, default=30)
    demo.add_argument("--agents", type=_at_least_one, default=3000)
    demo.add_argument("--seed", type=int, default=2025)
    demo.set_defaults(handler=_demo)


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def _demo(args: argparse.Namespace) -> int:
    from agent_billing_demo.demo import run_demo

    return run_demo(Path(args.home).resolve(), nights=args.nights, orgs=args.orgs, agents=args.agents, seed=args.seed)
