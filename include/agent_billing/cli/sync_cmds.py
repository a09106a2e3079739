"""``agent-billing sync``, ``units get`` and ``snapshots release|discard|reopen|accept-uncounted``:
the nightly sync by hand."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    sync = sub.add_parser("sync", help="run the nightly sync for one snapshot date (no Airflow)")
    sync.add_argument("--date", required=True, help="snapshot date YYYY-MM-DD")
    sync.add_argument(
        "--bill", action="store_true",
        help="then bill the night as of its date, as the nightly DAG does (only a complete or discarded "
        "night); night by night, this replays the nights after a restore (docs/deployment.md, 'Restore')")
    sync.add_argument(
        "--replay", action="store_true",
        help="only reprocess the night's landing: a night without one is refused (exit 2), never recorded "
        "as a gap nor extracted from VSA's present state (the replay after a restore)")
    sync.set_defaults(handler=_sync)

    units = sub.add_parser("units", help="Get Units Now: count a service's agents in VSA and bill the change")
    u_sub = units.add_subparsers(dest="units_command", required=True)
    get = u_sub.add_parser(
        "get", help="Get Units Now: count a service's agents in VSA now and record the change",
        description="Counts the service's agents in VSA now and sets its units: a count that differs is recorded "
                    "as a unit change effective today, which the next billing run bills. To look at a service's "
                    "units and changes without changing them, query the warehouse (docs/data-dictionary.md, "
                    "5.4 'A service's units over time').")
    get.add_argument("--service", required=True, type=str.strip, help="service_id")
    get.set_defaults(handler=_units_get)

    snapshots = sub.add_parser("snapshots", help="quarantined, discarded and uncounted snapshots")
    s_sub = snapshots.add_subparsers(dest="snapshots_command", required=True)
    for action, text in (("release", "accept a quarantined snapshot"), ("discard", "reject a quarantined snapshot, or one released by mistake"),
                         ("reopen", "take a discarded snapshot up again (then run its night)")):
        p = s_sub.add_parser(action, help=text)
        p.add_argument("date", help="snapshot date YYYY-MM-DD")
        p.set_defaults(handler=_snapshot_action, action=action)
    accept = s_sub.add_parser(
        "accept-uncounted", help="bill a service's days of a night a contracts change left uncounted, which "
        "no re-run can count (its landing gone, damaged or without the service's view), at the units of "
        "another night (the night then holds no invoice)")
    accept.add_argument("date", help="snapshot date YYYY-MM-DD (the first night, with --through)")
    accept.add_argument("--through", metavar="YYYY-MM-DD",
                        help="accept every recorded night of the service from DATE to this one")
    accept.add_argument("--service", required=True, type=str.strip, help="service_id")
    accept.set_defaults(handler=_accept_uncounted)


def _context():
    from agent_billing.settings import get_settings
    from agent_billing.warehouse import connect_warehouse

    return connect_warehouse(), get_settings()


def _sync(args: argparse.Namespace) -> int:
    from agent_billing.sync.dates import parse_date
    from agent_billing.sync.pipeline import sync_date
    from agent_billing.vsa.client import VsaClient
    from agent_billing.vsa.errors import VsaError

    snapshot_date = parse_date(args.date, "--date")
    engine, settings = _context()
    if args.replay:
        _refuse_replay_without_landing(settings, snapshot_date)
    try:
        sync_date(engine, settings, snapshot_date, VsaClient.from_env, on_step=_print_step)
    except Exception as failure:
        if isinstance(failure, VsaError):  # the way back, when the night is failed (not a final status kept)
            _add_rerun_note(failure, engine, settings, snapshot_date)
        try:
            _deliver(engine, settings)  # the failure's alert goes out too
        except Exception as exc:  # noqa: BLE001 - the sync's own error is the one to report
            log.warning("outbox not delivered: %s", exc)
        raise
    try:
        billing = _bill_the_night(engine, snapshot_date) if args.bill else None
    finally:
        _deliver_after_success(args, engine, settings)
    if billing is not None:
        billing.raise_for_failures()
    return 0


def _print_step(result) -> None:
    """One JSON line per step, as it ends: after a failure or Ctrl-C, the lines say what was done.
    A reader that stops reading (``sync … | head -1``) never stops the night: the rest of the
    output goes nowhere."""
    try:
        print(json.dumps(result.to_xcom(), default=str), flush=True)
    except OSError as exc:  # a closed pipe, a full disk: the night matters more than its report
        if not isinstance(exc, BrokenPipeError):
            log.warning("the step lines cannot be written (%s): the night goes on without them", exc)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _add_rerun_note(failure, engine, settings, snapshot_date) -> None:
    """Say how to run a night VSA failed again, and by when it can still be extracted."""
    from agent_billing.sync.pipeline import gap_warning
    from agent_billing.sync.runs import get_run

    try:
        with engine.connect() as conn:
            status = (get_run(conn, snapshot_date) or {}).get("status")
    except Exception:  # noqa: BLE001 - the warehouse's own trouble is not this error's
        return
    if status != "failed":
        return
    when = "once VSA answers" if failure.transient else "once this is fixed"
    note = f"snapshot {snapshot_date} is failed; re-run it {when} (agent-billing sync --date {snapshot_date})"
    if gap := gap_warning(settings, snapshot_date):
        note += f" {gap}"
    failure.add_note(note)


def _refuse_replay_without_landing(settings, snapshot_date) -> None:
    """A replay rebuilds what the lost warehouse held from the landings it was loaded from. A
    night without its landing would become a gap (or, allowed late, today's VSA as that night),
    and its invoice would be posted again with other lines than the customer received."""
    from agent_billing.errors import UserError
    from agent_billing.sync.landing import RawLanding

    landing = RawLanding(settings.raw_path, snapshot_date)
    if not landing.exists():
        raise UserError(
            f"--replay: snapshot {snapshot_date} has no landing at {landing.path}: restore that folder from the "
            "backup of the raw folder (is the raw volume mounted? AGENT_BILLING_RAW_PATH); if the night was a "
            "gap in the lost warehouse too, run it once without --replay; nothing was done")


def _bill_the_night(engine, snapshot_date):
    """``sync --bill``: the night's billing run, as the DAG's ``publish`` hands it to billing;
    None when the night bills nothing (a gap). A quarantined night fails the command (exit 1):
    a replay stops there, for the decision a person takes."""
    from agent_billing.billing import run_billing
    from agent_billing.billing.trigger import BILLABLE
    from agent_billing.cli.billing_cmds import print_billing_summary
    from agent_billing.errors import OperationFailed
    from agent_billing.sync.runs import get_run

    with engine.connect() as conn:
        status = (get_run(conn, snapshot_date) or {}).get("status")
    if status == "quarantined":  # the nights after it wait for a person's decision, as billing's horizon does
        raise OperationFailed(
            f"snapshot {snapshot_date} is quarantined: not billed; decide on it (agent-billing snapshots release "
            f"{snapshot_date}, or discard), bill it (agent-billing bill --as-of {snapshot_date}), then go on with "
            "the next night")
    if status not in BILLABLE:
        print(f"snapshot {snapshot_date} is {status or 'not recorded'}: not billed (a nightly run bills only "
              f"a complete or discarded night)")
        return None
    summary = run_billing(engine, snapshot_date)
    print_billing_summary(summary)
    return summary


def _deliver(engine, settings) -> None:
    from agent_billing.connections import ConnectionNotFound, get_connection
    from agent_billing.sync.notify import deliver_outbox

    try:
        smtp = get_connection("smtp_default")
    except ConnectionNotFound:
        smtp = None
    deliver_outbox(engine, smtp, settings.notify_from)


def _deliver_after_success(args: argparse.Namespace, engine, settings) -> None:
    """Send the queued mail. A delivery failure is not the command's failure: the work is
    done and committed, and the messages stay in the outbox for the next delivery."""
    from agent_billing.cli import command_name
    from agent_billing.errors import ConfigurationError
    from agent_billing.sync.notify import DeliveryFailed

    try:
        _deliver(engine, settings)
    except DeliveryFailed as exc:  # says that the messages stay and are retried
        print(f"agent-billing {command_name(args)}: warning: {exc}", file=sys.stderr)
    except ConfigurationError as exc:  # a malformed AIRFLOW_CONN_SMTP_DEFAULT
        print(f"agent-billing {command_name(args)}: warning: mail not sent: {exc}; it stays in "
              "notification_outbox for the next delivery", file=sys.stderr)


def _units_get(args: argparse.Namespace) -> int:
    from agent_billing.sync.units_now import get_units_now
    from agent_billing.vsa.client import VsaClient
    from agent_billing.wording import units_text

    engine, settings = _context()
    with VsaClient.from_env() as client:
        result = get_units_now(engine, client, args.service, tz=settings.tz)
    if result.change_recorded:
        change = f"unit change {result.units_before} → {result.units_after} effective {result.effective_date}"
    elif result.replaced:
        before, after = result.replaced
        change = f"no change from the last count; today's earlier change {before} → {after} is withdrawn"
    else:
        change = "no change"
    print(f"{result.service_id}: {units_text(result.units_after)} ({change})")
    _deliver_after_success(args, engine, settings)  # the change's mail
    return 0


def _snapshot_action(args: argparse.Namespace) -> int:
    from agent_billing.sync.dates import parse_date
    from agent_billing.sync.pipeline import SNAPSHOT_ACTIONS

    snapshot_date = parse_date(args.date, "snapshot date")
    engine, settings = _context()
    result = SNAPSHOT_ACTIONS[args.action](engine, settings, snapshot_date)
    waits = f" (waiting for its night: agent-billing sync --date {snapshot_date})" if args.action == "reopen" else ""
    print(f"snapshot {snapshot_date}: {result.status}{waits}")
    rejudged = result.detail.get("rejudged", {})
    for night, status in rejudged.items():
        print(f"snapshot {night}: {status} (judged again against the nights before it)")
    for night in (x for x in result.detail.get("still_quarantined", []) if x not in rejudged):
        print(f"snapshot {night}: still quarantined, waiting for its own decision "
              f"(agent-billing snapshots release {night}, or discard {night})")
    _deliver_after_success(args, engine, settings)  # its unit-change mail and re-judged nights' alerts
    return 0


def _accept_uncounted(args: argparse.Namespace) -> int:
    from agent_billing.contracts.recount import accept_uncounted
    from agent_billing.sync.dates import date_runs, parse_date

    night = parse_date(args.date, "snapshot date")
    through = parse_date(args.through, "--through") if args.through else None
    engine, _ = _context()
    accepted, countable = accept_uncounted(engine, args.service, night, through)
    print(f"service {args.service}: {'night' if len(accepted) == 1 else 'nights'} {date_runs(accepted)} accepted "
          "uncounted (their days bill at the units of another night)"
          + (f"; left to re-run, their landings can count it: {date_runs(countable)} (agent-billing sync --date D "
             "for each)" if countable else ""))
    return 0
