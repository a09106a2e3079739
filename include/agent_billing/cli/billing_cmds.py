"""``agent-billing bill``, ``review``, ``post`` and ``invoices export``: billing by hand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    bill = sub.add_parser("bill", help="bill every contract as of a date (idempotent)")
    bill.add_argument("--as-of", required=True, metavar="YYYY-MM-DD", help="the billing date")
    bill.add_argument(
        "--contract", action="append", dest="contracts", metavar="ID",
        help="only this contract (repeatable)",
    )
    bill.set_defaults(handler=_bill)

    review = sub.add_parser("review", help="list the lines waiting in billing_review")
    review.add_argument("--contract", metavar="ID", help="only this contract")
    review.set_defaults(handler=_review)

    post = sub.add_parser("post", help="post a contract's reviewed pending lines as its invoice")
    post.add_argument("--contract", required=True, metavar="ID")
    post.add_argument(
        "--as-of", metavar="YYYY-MM-DD", help="default: the date the pending lines were computed as of"
    )
    post.set_defaults(handler=_post)

    invoices = sub.add_parser("invoices", help="posted invoices")
    i_sub = invoices.add_subparsers(dest="invoices_command", required=True)
    export = i_sub.add_parser("export", help="one row per posted line of an invoice month")
    export.add_argument("--month", required=True, metavar="YYYY-MM", help="the invoice month")
    export.add_argument("--format", choices=["csv"], default="csv")
    export.add_argument("--output", type=Path, metavar="FILE", help="default: standard output")
    export.set_defaults(handler=_export)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table; numeric-looking columns are right-aligned."""
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [
        all(r[i].lstrip("-").replace(".", "", 1).isdigit() for r in cells[1:] if r[i])
        for i in range(len(headers))
    ]

    def line(r: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(r, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line(cells[0]), line(["-" * w for w in widths]), *map(line, cells[1:])])


def _bill(args: argparse.Namespace) -> int:
    from agent_billing.billing import run_billing
    from agent_billing.sync.dates import parse_date
    from agent_billing.warehouse import connect_warehouse

    as_of = parse_date(args.as_of, "--as-of")
    summary = run_billing(connect_warehouse(), as_of, contract_ids=args.contracts)
    active = [c for c in summary.contracts if c.invoice or c.pending_lines]
    if active:
        print(table(
            ("contract", "posting", "currency", "invoice", "type", "lines", "total", "pending",
             "pending total", "as of"),
            [
                (
                    c.contract_id, c.posting, c.currency,
                    c.invoice.invoice_id if c.invoice else "-",
                    c.invoice.document_type if c.invoice else "",
                    c.invoice.lines if c.invoice else "",
                    c.invoice.total if c.invoice else "",
                    c.pending_lines,
                    c.pending_total if c.pending_lines else "",
                    c.pending_as_of,
                )
                for c in active
            ],
        ))
        print()
    print(
        f"billed {len(summary.contracts)} contract(s) as of {as_of}: "
        f"{summary.invoices_posted} invoice(s) with {summary.lines_posted} line(s) posted, "
        f"{summary.pending_lines} line(s) pending review"
    )
    return 0


def _review(args: argparse.Namespace) -> int:
    from agent_billing.billing import pending_lines
    from agent_billing.warehouse import connect_warehouse

    rows = pending_lines(connect_warehouse(), args.contract)
    if not rows:
        print("no pending lines" + (f" for contract {args.contract}" if args.contract else ""))
        return 0
    print(table(
        ("contract", "posting", "service", "kind", "period", "units", "unit price", "days",
         "amount", "currency", "change / adjusts", "as of"),
        [
            (
                r["contract_id"], r["posting"], r["service_id"], r["kind"],
                f"{r['period_start']}..{r['period_end']}", r["units"], r["unit_price"],
                f"{r['days']}/{r['days_in_period']}", r["amount"], r["currency"],
                r["adjusts_line_id"] or r["change_id"], r["as_of"],
            )
            for r in rows
        ],
    ))
    return 0


def _post(args: argparse.Namespace) -> int:
    from agent_billing.billing import post_reviewed
    from agent_billing.sync.dates import parse_date
    from agent_billing.warehouse import connect_warehouse

    as_of = parse_date(args.as_of, "--as-of") if args.as_of else None
    result = post_reviewed(connect_warehouse(), args.contract, as_of)
    invoice = result.invoice
    print(
        f"posted {invoice.invoice_id} ({invoice.document_type}, invoice date {invoice.invoice_date}): "
        f"{invoice.lines} line(s), total {invoice.total} {result.currency}"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    from agent_billing.billing import export_invoice_lines
    from agent_billing.billing.calendar import parse_month
    from agent_billing.billing.export import write_atomically
    from agent_billing.warehouse import connect_warehouse

    month = parse_month(args.month, "--month")
    engine = connect_warehouse()
    if args.output is None:
        export_invoice_lines(engine, month, sys.stdout)
        return 0
    count = write_atomically(args.output, lambda out: export_invoice_lines(engine, month, out))
    print(f"wrote {count} line(s) of {args.month} to {args.output}", file=sys.stderr)
    return 0
