"""``vsa-sim`` (also ``agent-billing vsa-sim`` when both are installed): serve the simulator until interrupted.

The simulator is its own package: this module imports nothing from ``agent_billing``. It
registers itself as an ``agent_billing.commands`` entry point (``dev/pyproject.toml``).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

_DESCRIPTION = """\
Serve a stand-in Kaseya VSA REST API (under /api/v1.0) over a generated world (--seed,
--orgs, --agents, ...) or a scripted one (--scenario FILE, YAML or JSON). Control endpoints
without auth: GET /_sim/state, POST /_sim/date {"date": "YYYY-MM-DD"}, POST /_sim/faults
{...fault settings...}, POST /_sim/sessions/expire, POST /_sim/hidden-orgs {"orgs": [ORG_REF,
...]} (their agents vanish from every answer until {"orgs": []}: a quarantine rehearsal).
"""


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


def _fail_entry(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``vsa-sim`` to a command line's subcommands (``agent-billing vsa-sim``)."""
    add_arguments(sub.add_parser("vsa-sim", help="run the VSA simulator (a stand-in VSA REST API)",
                                 description=_DESCRIPTION))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    world = p.add_argument_group("world")
    world.add_argument("--scenario", metavar="FILE", help="a scripted world (YAML/JSON) instead of a generated one")
    world.add_argument("--seed", type=int, default=42)
    world.add_argument("--orgs", type=int, default=30)
    world.add_argument("--agents", type=int, default=3000, help="agents on the start date")
    world.add_argument("--daily-churn", type=float, default=0.004, help="share of agents changing per day")
    world.add_argument("--start-date", type=_iso_date, default=date(2024, 1, 1))
    world.add_argument("--date", type=_iso_date, help="the date served first (default: the start date)")
    world.add_argument("--ids-as-numbers", action="store_true", help="render decimal ids as JSON numbers")
    auth = p.add_argument_group("credentials")
    auth.add_argument("--user", default=None, help="API user name (default billing.integrator)")
    auth.add_argument("--token", default=None, help="personal access token (default: a fixed demo GUID)")
    auth.add_argument("--session-minutes", type=int, default=30)
    faults = p.add_argument_group("faults")
    faults.add_argument("--latency-ms", type=int, default=0)
    faults.add_argument("--rate-429", type=float, default=0.0)
    faults.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds on 429")
    faults.add_argument("--rate-5xx", type=float, default=0.0)
    faults.add_argument("--error-in-200-rate", type=float, default=0.0)
    faults.add_argument("--malformed-rate", type=float, default=0.0)
    faults.add_argument("--session-expires-after", type=int, metavar="N", help="requests per session token")
    faults.add_argument("--insert-during-paging", type=int, metavar="N",
                        help="insert an agent after N agent pages of an extraction")
    faults.add_argument("--insert-count", type=int, default=1, metavar="N",
                        help="inserts per simulated date (0 = every extraction)")
    faults.add_argument("--fail-next", type=_fail_entry, nargs="+", default=[], metavar="STATUS",
                        help="outcomes of the next API requests: statuses or malformed/error_in_200/reset")
    faults.add_argument("--fault-seed", type=int, default=0)
    p.set_defaults(handler=_serve)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (docker stop, kill) shuts down like Ctrl-C


def _serve(args: argparse.Namespace) -> int:
    import signal
    import threading

    from vsa_simulator import (
        DEMO_TOKEN,
        DEMO_USER,
        FaultConfig,
        GeneratedScenario,
        ScriptedScenario,
        SimulatorServer,
    )

    try:
        if args.scenario:
            world = ScriptedScenario.from_file(args.scenario)
        else:
            world = GeneratedScenario(seed=args.seed, orgs=args.orgs, agents=args.agents,
                                      start=args.start_date, daily_churn=args.daily_churn)
        faults = FaultConfig(
            latency_ms=args.latency_ms, rate_429=args.rate_429, retry_after=args.retry_after,
            rate_5xx=args.rate_5xx, error_in_200_rate=args.error_in_200_rate,
            malformed_rate=args.malformed_rate, session_expires_after=args.session_expires_after,
            insert_during_paging=args.insert_during_paging, insert_count=args.insert_count or None,
            fail_next=args.fail_next, seed=args.fault_seed,
        )
    except ValueError as exc:  # ScenarioError included: the message says what to fix
        return _usage_error(str(exc))
    server = SimulatorServer(
        world, host=args.host, port=args.port, user=args.user or DEMO_USER,
        token=args.token or DEMO_TOKEN, faults=faults, date=args.date,
        ids_as_numbers=args.ids_as_numbers, session_minutes=args.session_minutes,
    )
    counts = server.state().counts()  # build the served date before announcing the URL
    try:
        server.start()
    except OSError as exc:
        return _usage_error(f"cannot listen on {args.host}:{args.port}: {exc.strerror}")
    # The one place a credential is printed: the simulator's own demo token, not a secret.
    print(f"VSA simulator at {server.base_url} (date {server.date}, {counts['agents']} agents); "
          f"AIRFLOW_CONN_VSA_DEFAULT='{server.connection_json()}'", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _usage_error(message: str) -> int:
    print(f"vsa-sim: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """The standalone ``vsa-sim`` console script."""
    parser = argparse.ArgumentParser(prog="vsa-sim", description=_DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
