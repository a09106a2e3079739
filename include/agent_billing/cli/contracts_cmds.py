"""``agent-billing contracts apply FILE [--plan | --check] [--prune --end-date D] [--strict]``
and ``agent-billing contracts history ID`` (what each apply changed).

One code path: the plan is computed (same validation, same locks), then executed in one
transaction; ``--plan`` prints it field by field and ``--check`` as a summary, both without
writing. Exit codes: 0 applied / nothing refused, 2 bad input, a refusal, or (``--strict``) a
scope that points at nothing.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

EXIT_REFUSED = 2


def register(sub: argparse._SubParsersAction) -> None:
    contracts = sub.add_parser("contracts", help="accounts, contracts and services")
    c_sub = contracts.add_subparsers(dest="contracts_command", required=True)
    apply = c_sub.add_parser(
        "apply",
        help="apply a contracts YAML file (docs/contracts.md)",
        description="Apply a contracts YAML file: validated whole, planned, applied in one "
        "transaction. See docs/contracts.md.",
    )
    apply.add_argument("file", help="path to the contracts YAML file")
    preview = apply.add_mutually_exclusive_group()
    preview.add_argument("--plan", action="store_true",
                         help="print what apply would do, field by field; write nothing")
    preview.add_argument("--check", action="store_true",
                         help="print the plan's summary and refusals only; write nothing")
    apply.add_argument("--prune", action="store_true",
                       help="end (never delete) contracts and services absent from the file; needs --end-date")
    apply.add_argument("--end-date", type=_iso_date, metavar="YYYY-MM-DD",
                       help="the end date given to absent entries with --prune")
    apply.add_argument("--strict", action="store_true",
                       help="refuse when a service's VSA org, machine group or view is missing "
                       "from the latest complete snapshot (default: warn)")
    apply.set_defaults(handler=_apply, parser=apply)
    history = c_sub.add_parser(
        "history",
        help="what each contracts apply changed for an account, contract or service",
        description="Every change contracts apply made (recorded since warehouse revision 0022), "
        "oldest first, with the file and line: an account's includes its contracts and services, "
        "a contract's its services.",
    )
    history.add_argument("id", help="an account_id, contract_id or service_id")
    history.set_defaults(handler=_history)


def _iso_date(value: str) -> date:
    """The one date rule of the command line (``parse_date``: exactly YYYY-MM-DD; a week date
    such as 2025-W01-1, which Python reads, ended entries on 2024-12-30)."""
    from agent_billing.errors import UserError
    from agent_billing.sync.dates import parse_date

    try:
        return parse_date(value, "--end-date")
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _apply(args: argparse.Namespace) -> int:
    if args.prune != (args.end_date is not None):
        args.parser.error("--prune and --end-date go together: --prune --end-date YYYY-MM-DD")

    from agent_billing.contracts import read_contracts_file, run_contracts
    from agent_billing.warehouse import connect_warehouse

    document = read_contracts_file(args.file)
    preview = args.plan or args.check
    plan = run_contracts(connect_warehouse(), document, prune_end_date=args.end_date,
                         strict=args.strict, dry_run=preview)
    if args.plan:
        for line in plan.detail_lines():
            print(line)
    elif args.check:
        for line in plan.detail_lines(unchanged=False):
            if line.startswith("!"):
                print(line)
    else:
        for line in plan.detail_lines(unchanged=False):
            print(line)
    verb = "would apply" if preview else "applied"
    print(f"{args.file}: {verb}: {plan.summary()}" + ("" if plan.changed else " (no changes)"))
    _report_scopes(plan, strict=args.strict)
    for warning in plan.back_billing + plan.backdated + plan.uncounted:
        print(f"agent-billing contracts apply: warning: {warning}", file=sys.stderr)
    if plan.refused:
        print(f"agent-billing contracts apply: error: {len(plan.refused)} entr{'y' if len(plan.refused) == 1 else 'ies'} "
              f"refused; nothing would be applied", file=sys.stderr)
        return EXIT_REFUSED
    if preview and args.strict and plan.scope_problems:
        return EXIT_REFUSED
    return 0


def _history(args: argparse.Namespace) -> int:
    from agent_billing.contracts.edits import edit_history, history_lines
    from agent_billing.warehouse import connect_warehouse

    with connect_warehouse().connect() as conn:
        kinds, edits = edit_history(conn, args.id)
    if not kinds and not edits:
        print(f"agent-billing contracts history: error: no account, contract or service {args.id!r} in the "
              "warehouse (ids are case-sensitive)", file=sys.stderr)
        return EXIT_REFUSED
    for line in history_lines(edits):
        print(line)
    if not edits:
        print(f"{' / '.join(kinds)} {args.id}: no edits recorded (contracts apply records them since "
              "warehouse revision 0022)")
    return 0


def _report_scopes(plan, *, strict: bool) -> None:
    """Scopes that point at nothing: one stderr line per service (refused with --strict)."""
    if not plan.scopes_checked:
        if not plan.refused:
            print("agent-billing contracts apply: note: no complete VSA snapshot yet; scopes not checked",
                  file=sys.stderr)
        return
    level = "error" if strict else "warning"
    for problem in plan.scope_problems:
        print(f"agent-billing contracts apply: {level}: {problem.message()}", file=sys.stderr)
