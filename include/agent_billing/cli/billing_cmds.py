"""``agent-billing bill``, ``review``, ``post`` and ``invoices list|show|preview|export``."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from agent_billing.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    bill = sub.add_parser("bill", help="bill every contract as of a date (idempotent)")
    bill.add_argument("--as-of", required=True, metavar="YYYY-MM-DD", help="the billing date")
    bill.add_argument(
        "--contract", action="append", dest="contracts", metavar="ID", type=str.strip,  # as pasted
        help="only this contract (repeatable)",
    )
    bill.add_argument(
        "--dry-run", action="store_true",
        help="run the real reconciliation, print what it would post and roll it back",
    )
    bill.set_defaults(handler=_bill)

    review = sub.add_parser("review", help="list the lines waiting in billing_review")
    review.add_argument("--contract", metavar="ID", type=str.strip, help="only this contract")
    review.set_defaults(handler=_review)

    post = sub.add_parser("post", help="post a contract's reviewed pending lines as its invoice")
    post.add_argument("--contract", required=True, metavar="ID", type=str.strip)
    post.add_argument(
        "--as-of", metavar="YYYY-MM-DD",
        help="default: the date the pending lines were computed as of (an earlier date is refused)"
    )
    post.add_argument(
        "--expect-total", metavar="AMOUNT",
        help="the total `review` showed: nothing is posted if the lines no longer add up to it "
        "(a billing run refreshed them since, or a typo)",
    )
    post.set_defaults(handler=_post)

    invoices = sub.add_parser("invoices", help="posted invoices")
    i_sub = invoices.add_subparsers(dest="invoices_command", required=True)
    listing = i_sub.add_parser("list", help="the invoices and credit notes of an invoice month")
    listing.add_argument("--month", required=True, metavar="YYYY-MM", help="the invoice month")
    listing.add_argument("--format", choices=["table", "json"], default="table")
    listing.set_defaults(handler=_list)

    show = i_sub.add_parser("show", help="one posted invoice with its lines")
    show.add_argument("invoice_id", metavar="INVOICE_ID")
    show.add_argument("--format", choices=["table", "json"], default="table")
    show.set_defaults(handler=_show)

    preview = i_sub.add_parser(
        "preview", help="the next invoice of a contract, with the agents behind each change"
    )
    preview.add_argument("--contract", required=True, metavar="ID", type=str.strip)
    preview.add_argument(
        "--as-of", metavar="YYYY-MM-DD",
        help="default: the latest date within the billing horizon (latest concluded sync, not after today)",
    )
    preview.add_argument("--format", choices=["table", "json"], default="table")
    preview.set_defaults(handler=_preview)

    export = i_sub.add_parser("export", help="one row per posted line of an invoice month")
    export.add_argument("--month", required=True, metavar="YYYY-MM", help="the invoice month")
    export.add_argument("--format", choices=["csv", "json"], default="csv")
    export.add_argument("--output", metavar="FILE", help="default (or -): standard output")
    export.add_argument(
        "--for-excel", action="store_true",
        help="CSV that Excel opens with accented names intact (starts with a UTF-8 byte-order mark)",
    )
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


def print_json(value: object) -> None:
    """JSON on stdout: decimals and dates as strings (exact, never floats)."""
    print(json.dumps(value, default=str, indent=2))


def _bill(args: argparse.Namespace) -> int:
    from agent_billing.billing import run_billing
    from agent_billing.sync.dates import parse_date
    from agent_billing.warehouse import connect_warehouse

    as_of = parse_date(args.as_of, "--as-of")
    summary = run_billing(connect_warehouse(), as_of, contract_ids=args.contracts, dry_run=args.dry_run)
    print_billing_summary(summary)
    sys.stdout.flush()
    summary.raise_for_failures()
    return 0


def print_billing_summary(summary) -> None:
    """A billing run's contracts, failures and totals, as ``bill`` prints them."""
    as_of = summary.as_of
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
    if summary.failed:
        print(table(("failed contract", "error"), [(f.contract_id, f.error) for f in summary.failed]))
        print()
    if summary.dry_run:
        print(
            f"dry run as of {as_of}, nothing written: {len(summary.contracts)} contract(s) would "
            f"post {summary.invoices_posted} invoice(s) with {summary.lines_posted} line(s), "
            f"{summary.pending_words()} (would wait)"
        )
    else:
        print(
            f"billed {len(summary.contracts)} contract(s) as of {as_of}: "
            f"{summary.invoices_posted} invoice(s) with {summary.lines_posted} line(s) posted, "
            f"{summary.pending_words()}"
        )
    if summary.nights_left_out:
        from agent_billing.billing.post import LEFT_OUT_OF_A_RUN, left_out_in_words

        nights = left_out_in_words(dict(summary.nights_left_out), decided=LEFT_OUT_OF_A_RUN)
        print(f"not counted in this run, {nights}")


def _review(args: argparse.Namespace) -> int:
    from decimal import Decimal

    from agent_billing.billing import pending_lines
    from agent_billing.billing.review import review_notes
    from agent_billing.warehouse import connect_warehouse

    engine = connect_warehouse()
    rows = pending_lines(engine, args.contract)
    notes = review_notes(engine, rows, args.contract)
    if not rows:
        print("no pending lines" + (
            f" for contract {args.contract} as of its last billing run (its next invoice now, with any change "
            f"since: agent-billing invoices preview --contract {args.contract})" if args.contract else ""))
        for note in notes:
            print(f"\n{note}")
        return 0
    print(table(
        ("contract", "posting", "line id", "service", "kind", "period", "units", "unit price",
         "days", "amount", "currency", "change / adjusts", "as of"),
        [
            (
                r["contract_id"], r["posting"], r["line_id"], r["service_id"], r["kind"],
                f"{r['period_start']}..{r['period_end']}", r["units"], r["unit_price"],
                f"{r['days']}/{r['days_in_period']}", r["amount"], r["currency"],
                r["adjusts_line_id"] or r["change_id"], r["as_of"],
            )
            for r in rows
        ],
    ))
    totals: dict[tuple[str, str], list] = {}
    for r in rows:
        entry = totals.setdefault((r["contract_id"], r["currency"]), [0, Decimal(0)])
        entry[0] += 1
        entry[1] += r["amount"]
    print()
    print(table(
        ("contract", "lines", "total", "currency"),
        [(contract, n, total, currency) for (contract, currency), (n, total) in totals.items()],
    ))
    if any(r["kind"] == "adjustment" for r in rows):  # a customer is quoted the posted line's id
        notes.append(
            "an adjustment's line id changes when it is posted (its key ends in the invoice id instead of "
            "`pending`): quote the line it corrects (change / adjusts), or its id on the posted invoice "
            "(`agent-billing invoices show`)")
    for note in notes:
        print(f"\n{note}")
    return 0


def _amount(raw: str, option: str) -> Decimal:
    """An amount as typed (``160.00``, ``-12.5``): exact, or refused in one line (an exponent, a
    digit separator or a currency sign is refused, not read as something else)."""
    if not re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", raw.strip()):
        raise UserError(f"{option} {raw!r} is not an amount (digits with a decimal point, e.g. 160.00)")
    return Decimal(raw.strip())


def _post(args: argparse.Namespace) -> int:
    from agent_billing.billing import post_reviewed
    from agent_billing.sync.dates import parse_date
    from agent_billing.warehouse import connect_warehouse

    as_of = parse_date(args.as_of, "--as-of") if args.as_of else None
    expect_total = _amount(args.expect_total, "--expect-total") if args.expect_total is not None else None
    result = post_reviewed(connect_warehouse(), args.contract, as_of, expect_total)
    invoice = result.invoice
    print(
        f"posted {invoice.invoice_id} ({invoice.document_type}, invoice date {invoice.invoice_date}, as of "
        f"{result.pending_as_of}): {invoice.lines} line(s), total {invoice.total} {result.currency}"
    )
    if result.nights_left_out:
        from agent_billing.billing.post import left_out_in_words

        print(f"not in it, {left_out_in_words(dict(result.nights_left_out), posted=True)}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from agent_billing.billing.calendar import parse_month
    from agent_billing.billing.invoices import check_month_reached, list_invoices
    from agent_billing.warehouse import connect_warehouse

    month, engine = parse_month(args.month, "--month"), connect_warehouse()
    rows = list_invoices(engine, month)
    if not rows:  # no month without invoices, unless billing has reached it
        check_month_reached(engine, month)
    if args.format == "json":
        print_json(rows)
    elif not rows:
        print(f"no invoices for {args.month}")
    else:
        print(table(
            ("invoice", "contract", "account", "invoice date", "as of", "type", "lines", "total", "currency"),
            [(r["invoice_id"], r["contract_id"], r["account_name"], r["invoice_date"], r["as_of"],
              r["document_type"], r["lines"], r["total"], r["currency"]) for r in rows],
        ))
    return 0


def _show(args: argparse.Namespace) -> int:
    from agent_billing.billing.invoices import show_invoice
    from agent_billing.warehouse import connect_warehouse

    invoice = show_invoice(connect_warehouse(), args.invoice_id.strip())  # as pasted from a spreadsheet
    if args.format == "json":
        print_json(invoice)
        return 0
    print(
        f"{invoice['invoice_id']} ({invoice['document_type']}) for contract {invoice['contract_id']}, "
        f"{invoice['account_name']}: invoice date {invoice['invoice_date']}, "
        f"total {invoice['total']} {invoice['currency']}"
    )
    if invoice["as_of"] > invoice["invoice_date"]:  # a review invoice posted late: why its lines go on
        print(f"posted as of {invoice['as_of']}: its lines bill the unit changes up to that date")
    print()
    print(_lines_table(invoice["lines"]))
    _print_agents(invoice["lines"])
    return 0


def _preview(args: argparse.Namespace) -> int:
    from agent_billing.billing.preview import preview_invoice
    from agent_billing.sync.dates import parse_date
    from agent_billing.warehouse import connect_warehouse

    as_of = parse_date(args.as_of, "--as-of") if args.as_of else None
    invoice = preview_invoice(connect_warehouse(), args.contract, as_of)
    if args.format == "json":
        print_json(invoice)
        return 0
    state = (
        "complete" if invoice["complete"]
        else "so far; the month's normal lines are added on its invoice date"
    )
    print(
        f"next invoice {invoice['invoice_id']} of contract {invoice['contract_id']} "
        f"({invoice['posting']}), invoice date {invoice['invoice_date']}, as of {invoice['as_of']} "
        f"({state}): {len(invoice['lines'])} line(s), total {invoice['total']} {invoice['currency']}"
    )
    if forecast := invoice["forecast"]:
        print(
            f"forecast for {invoice['invoice_date']}, with the nights counted until {forecast['counted_until']}: "
            f"total {forecast['total']} {invoice['currency']}, adding {len(forecast['added_lines'])} line(s) "
            "(below the lines so far)"
        )
        if forecast["not_counted_note"]:
            print(f"not in the forecast, {forecast['not_counted_note']}")
        if forecast["uncounted_services"]:
            print(f"not counted yet, so at 0 units in the forecast: {', '.join(forecast['uncounted_services'])} "
                  "(their first count sets their units)")
    if invoice["not_counted_note"]:
        print(f"not in these lines, {invoice['not_counted_note']}")
    if invoice["held"]:
        print(invoice["held"])
    if invoice["bill_first"]:
        print(f"a review contract: `post` would post the pending lines of its last billing run, not these: bill as "
              f"of {invoice['bill_first']} first (agent-billing bill --as-of {invoice['bill_first']} --contract "
              f"{invoice['contract_id']}), then post it before {invoice['post_before']} (agent-billing post "
              f"--contract {invoice['contract_id']})")
    elif invoice["post_before"]:
        print(f"a review contract: post it before {invoice['post_before']} (agent-billing post --contract "
              f"{invoice['contract_id']}), or its lines go on the next month's invoice")
    if invoice["lines"]:
        print()
        print(_lines_table(invoice["lines"]))
    _print_agents(invoice["lines"])
    if forecast and forecast["added_lines"]:
        print()
        print("the forecast adds:")
        print(_lines_table(forecast["added_lines"]))
    return 0


def _print_agents(lines: list[dict]) -> None:
    """The agents behind the prorated lines, one row each (what a customer asks about)."""
    agents = [(x["line_id"], a["agent_id"], a["agent_name"], a["event"]) for x in lines for a in x["agents"]]
    if agents:
        print()
        print(table(("line id", "agent id", "agent name", "event"), agents))


def _lines_table(lines: list[dict]) -> str:
    return table(
        ("line id", "service", "kind", "period", "units", "unit price", "days", "amount",
         "change / adjusts", "description"),
        [  # an adjustment's units × price × days is not its amount: its description says why
            (x["line_id"], x["service_id"], x["kind"], f"{x['period_start']}..{x['period_end']}",
             x["units"], x["unit_price"], f"{x['days']}/{x['days_in_period']}", x["amount"],
             x["adjusts_line_id"] or x["change_id"], x.get("description") or "")
            for x in lines
        ],
    )


def _export(args: argparse.Namespace) -> int:
    from agent_billing.billing import export_invoice_lines
    from agent_billing.billing.calendar import parse_month
    from agent_billing.billing.export import refuse_to_replace_other_files, write_atomically
    from agent_billing.billing.invoices import check_month_reached
    from agent_billing.errors import UserError
    from agent_billing.warehouse import connect_warehouse

    month = parse_month(args.month, "--month")
    if args.output is not None and not args.output.strip():
        raise UserError("--output is empty: give a file name, or - (or nothing) for the standard output")
    if args.for_excel and args.format != "csv":
        raise UserError("--for-excel is for --format csv: JSON has no byte-order mark")
    engine = connect_warehouse()
    check_month_reached(engine, month)  # before the file is written
    if args.output in (None, "-"):
        export_invoice_lines(engine, month, sys.stdout, args.format, args.for_excel)
        return 0
    refuse_to_replace_other_files(Path(args.output))
    count = write_atomically(
        Path(args.output), lambda out: export_invoice_lines(engine, month, out, args.format, args.for_excel)
    )
    print(f"wrote {count} line(s) of {args.month} to {args.output}", file=sys.stderr)
    return 0
