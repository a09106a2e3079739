"""``agent-billing contracts apply FILE``: declarative, validated, idempotent, transactional."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    contracts = sub.add_parser("contracts", help="accounts, contracts and services")
    c_sub = contracts.add_subparsers(dest="contracts_command", required=True)
    apply = c_sub.add_parser("apply", help="apply a contracts YAML file (SPEC §9)")
    apply.add_argument("file", help="path to the contracts YAML file")
    apply.add_argument("--check", action="store_true", help="validate only, write nothing")
    apply.set_defaults(handler=_apply)


def _apply(args: argparse.Namespace) -> int:
    from agent_billing.contracts import apply_contracts, load_contracts_file
    from agent_billing.warehouse import connect_warehouse

    spec = load_contracts_file(args.file)
    if args.check:
        services = sum(len(c.services) for a in spec.accounts for c in a.contracts)
        print(f"{args.file}: valid ({len(spec.accounts)} accounts, {services} services)")
        return 0
    report = apply_contracts(connect_warehouse(), spec)
    print(f"{args.file}: {report.summary()}" + ("" if report.changed else " (no changes)"))
    return 0
