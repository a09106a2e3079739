"""The ``agent-billing`` command line: every pipeline step, runnable without a scheduler.

Each command group lives in its own module with a ``register(subparsers)`` function; heavy
imports happen inside the command handlers so that ``agent-billing --help`` stays instant.
Installed extensions add commands through the ``agent_billing.commands`` entry point group:
the development tools (``dev/pyproject.toml``) add ``vsa-sim`` and ``demo`` that way, and the
production image, which leaves them out, simply has no such commands.

Errors are handled here, once for every command (README "Exit codes and errors"): a mistake a
user can make is one line on stderr naming what to fix, exit 2; a failure of an outside system
is one line, exit 1; anything else is a bug, one line saying to re-run with ``--debug``, exit 1.
Before a command runs, the warehouse's schema revision is checked (one query) unless the
command opts out with ``set_defaults(check_schema=False)`` (``db upgrade``, ``vsa probe`` and
the development tools, which bring their own warehouse if any); the ``AGENT_BILLING_*``
settings likewise (``check_settings``), so that a bad one is refused even by a command that
does not read it; those three read none and opt out.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
import traceback
from importlib.metadata import entry_points

from agent_billing.errors import EXIT_BAD_INPUT, EXIT_FAILURE, PATH_MISTAKES, UserError

COMMAND_MODULES = (
    "agent_billing.cli.db_cmds",
    "agent_billing.cli.vsa_cmds",
    "agent_billing.cli.contracts_cmds",
    "agent_billing.cli.sync_cmds",
    "agent_billing.cli.billing_cmds",
)
COMMAND_ENTRY_POINTS = "agent_billing.commands"


class _OneLineErrors(argparse.ArgumentParser):
    """Usage mistakes are one line too: the problem and where to find the usage."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _common_options() -> argparse.ArgumentParser:
    """The options every (sub)command accepts, so ``agent-billing bill --as-of D -v`` works.

    ``default=SUPPRESS``: an option not given after the subcommand must not reset the value
    given before it (``agent-billing -v bill ...``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log progress (INFO)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="log everything (DEBUG) and print the traceback of an error")
    return common


COMMON_OPTIONS = _common_options()


class _CommandParser(_OneLineErrors):
    """The parser of every subcommand, nested ones included (``add_subparsers`` uses the
    parent's class): the shared parent parser adds the common options."""

    def __init__(self, **kwargs) -> None:
        kwargs["parents"] = [*kwargs.get("parents", ()), COMMON_OPTIONS]
        super().__init__(**kwargs)

    def add_subparsers(self, **kwargs):
        """A group's subcommands (``contracts apply``): a missing one is named SUBCOMMAND, not
        by its internal ``dest`` (``contracts_command``)."""
        kwargs.setdefault("metavar", "SUBCOMMAND")
        return super().add_subparsers(**kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(
        prog="agent-billing",
        description="Bill MSP customers per Kaseya VSA agent, prorated by day.",
        epilog="Exit codes: 0 success, 1 failure, 2 bad input or usage.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO)")
    parser.add_argument("--debug", action="store_true",
                        help="log everything (DEBUG) and print the traceback of an error")
    parser.set_defaults(check_schema=True, check_settings=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_CommandParser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for entry_point in sorted(entry_points(group=COMMAND_ENTRY_POINTS), key=lambda e: e.name):
        before = set(sub.choices)
        entry_point.load()(sub)
        for name in set(sub.choices) - before:
            sub.choices[name].set_defaults(check_schema=False, check_settings=False)  # dev tools set their own
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)  # also for libraries that set their own loggers to INFO (GX)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    if args.debug or args.verbose:
        logging.getLogger("alembic").setLevel(level)  # quiet_alembic() leaves it alone then
        if not args.debug:  # Alembic announces each of its plugins at INFO: not the command's progress
            logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def _require_current_schema() -> None:
    from agent_billing.warehouse import connect_warehouse
    from agent_billing.warehouse.migrate import require_current_schema

    engine = connect_warehouse()
    try:
        require_current_schema(engine)
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:  # Ctrl-C while the commands are set up (imports)
        print("agent-billing: interrupted before it started; nothing was done", file=sys.stderr)
        return 130
    _configure_logging(args)
    try:
        if args.check_settings:  # refused by every command that reads settings, also by one not using the bad one
            from agent_billing.settings import get_settings

            get_settings()
        if args.check_schema:
            _require_current_schema()
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        # every write is a transaction, and landings and exports are written aside and renamed
        print(f"agent-billing {command_name(args)}: interrupted: the step in progress was rolled back, what "
              "finished before it is kept; run the command again to complete it", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `agent-billing invoices export | head`: the reader had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141  # as a command killed by SIGPIPE
    except Exception as exc:  # noqa: BLE001 - every error ends as one line (README)
        message, code = explain(exc)
        if args.debug:
            traceback.print_exc()
        print(f"agent-billing {command_name(args)}: error: {message}", file=sys.stderr)
        return code


def command_name(args: argparse.Namespace) -> str:
    """The command as typed, nested subcommand included (``invoices show``): the prefix of its
    errors and warnings. A group's subcommand is in ``<group>_command`` (``register``)."""
    nested = getattr(args, f"{args.command}_command", None)
    return f"{args.command} {nested}" if isinstance(nested, str) else args.command


def explain(exc: BaseException) -> tuple[str, int]:
    """One line naming what to fix and the exit code, for any exception a command raised.

    The only place where library errors are translated; no message carries a password."""
    from sqlalchemy import exc as sa

    from agent_billing.warehouse.errors import driver_error, permission_denied, wrong_setting

    if isinstance(exc, UserError):
        # an outside system's passing trouble (VSA 5xx, timeouts) is a failure, not bad input
        code = EXIT_FAILURE if getattr(exc, "transient", False) else exc.exit_code
        message = "; ".join([str(exc), *getattr(exc, "__notes__", ())])  # a command's note: what to do next
    elif permission_denied(exc):
        message = (f"the warehouse role may not do this: {_one_line(driver_error(exc))} (commands that write, "
                   "bill --dry-run and contracts apply --plan/--check included, need the role that owns the "
                   "schema; check AIRFLOW_CONN_BILLING_WAREHOUSE)")
        code = EXIT_BAD_INPUT
    elif (kind := _database_error_kind(exc)) == "DataError":
        message = f"a value does not fit the warehouse's columns: {_one_line(driver_error(exc))}"
        code = EXIT_BAD_INPUT
    elif kind in ("OperationalError", "DatabaseError"):
        cause = driver_error(exc)
        code = EXIT_BAD_INPUT if wrong_setting(exc) else EXIT_FAILURE
        what_to_do = ("check AIRFLOW_CONN_BILLING_WAREHOUSE" if code == EXIT_BAD_INPUT else
                      # a server down, a session cut, a host or TLS setting: nothing half-written either way
                      "check AIRFLOW_CONN_BILLING_WAREHOUSE and that the database is up, then run the command "
                      "again: what it had not committed was rolled back")
        message = f"cannot use the warehouse {_warehouse_for_messages()}: {_one_line(cause)} ({what_to_do})"
    elif wrong_setting(exc):  # a URL parameter psycopg refuses before connecting
        message = (f"invalid warehouse setting: {_one_line(driver_error(exc))} "
                   "(check AIRFLOW_CONN_BILLING_WAREHOUSE)")
        code = EXIT_BAD_INPUT
    elif isinstance(exc, OverflowError):  # e.g. sqlite3 binding an int beyond 64 bits
        message, code = f"a value is out of range: {_one_line(exc)}", EXIT_BAD_INPUT
    elif isinstance(exc, sa.ArgumentError):
        message = f"invalid warehouse setting: {_one_line(exc)} (check AIRFLOW_CONN_BILLING_WAREHOUSE)"
        code = EXIT_BAD_INPUT
    elif isinstance(exc, OSError) and exc.filename is not None:
        message, code = _explain_path(exc)
    else:
        message = (f"unexpected {type(exc).__name__}: {_one_line(exc)} "
                   "(re-run with --debug for the traceback)")
        code = EXIT_FAILURE
    return _without_secrets(message), code


def _database_error_kind(exc: BaseException) -> str | None:
    """"DataError" or "OperationalError" (PEP 249 classes) for a database error, wrapped by
    SQLAlchemy or raised by the driver itself, or "DatabaseError" for one of that base class
    itself (SQLite's "file is not a database"); None for anything else."""
    from agent_billing.warehouse.errors import database_error_classes, driver_error

    names = database_error_classes(exc)
    if type(driver_error(exc)).__name__ == "DatabaseError":
        return "DatabaseError"
    return next((k for k in ("DataError", "OperationalError") if k in names), None)


def _explain_path(exc: OSError) -> tuple[str, int]:
    from pathlib import Path

    # A rename (atomic write) names the temporary file first and the destination second.
    path = Path(os.fsdecode(exc.filename2 if exc.filename2 is not None else exc.filename))
    code = EXIT_BAD_INPUT if exc.errno in PATH_MISTAKES else EXIT_FAILURE
    if exc.errno == errno.ENOENT and not path.parent.is_dir():
        return f"{path.parent}: no such directory", code
    return f"{path}: {exc.strerror or type(exc).__name__}", code


def _one_line(exc: BaseException | None) -> str:
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    return text or type(exc).__name__


def _warehouse_for_messages() -> str:
    try:
        from sqlalchemy.engine import make_url

        from agent_billing.warehouse.engine import safe_url, warehouse_url

        return safe_url(make_url(warehouse_url()))
    except Exception:  # noqa: BLE001 - only for the message
        return "(billing_warehouse)"


def _secrets() -> list[str]:
    """Passwords and secret extras (``sslpassword`` ...) of the configured ``AIRFLOW_CONN_*``
    connections."""
    from agent_billing.connections import get_connection, is_secret_key

    found = []
    for name in os.environ:
        if name.startswith("AIRFLOW_CONN_"):
            try:
                conn = get_connection(name[len("AIRFLOW_CONN_"):].lower())
            except Exception:  # noqa: BLE001 - an unparsable setting has no password to hide
                continue
            values = [conn.password, *(v for k, v in conn.extra.items() if is_secret_key(k))]
            found += [v for v in values if isinstance(v, str) and len(v) >= 3]
    return found


def _without_secrets(message: str) -> str:
    from urllib.parse import quote

    for secret in _secrets():
        for form in {secret, quote(secret, safe="")}:
            message = message.replace(form, "***")
    return message


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
