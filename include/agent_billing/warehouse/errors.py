"""Database errors, told apart by their PEP 249 class: what the command line explains, and
which are passing trouble worth the same (idempotent) work again later."""

from __future__ import annotations

DRIVER_MODULES = ("psycopg", "sqlite3")  # raw driver errors escape SQLAlchemy (COPY)
#: SQLSTATEs (or their classes) of PostgreSQL's passing trouble: a connection lost or refused
#: (08), a serialization failure, a deadlock, a lock not available, a server shutting down or
#: starting (57P01-57P03), too many connections.
TRANSIENT_SQLSTATES = ("08", "40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300")
#: SQLite's passing trouble: another writer holds the database past the busy timeout.
SQLITE_BUSY = ("database is locked", "database table is locked", "database is busy")
#: A unique key taken by another run of the same work in the meantime (two billing runs racing
#: for one invoice): run again, it finds the other's rows and does nothing twice.
UNIQUE_VIOLATION = "23505"
#: The warehouse role may not read or write a table (a read-only role running a writing command).
INSUFFICIENT_PRIVILEGE = "42501"
#: A warehouse setting that cannot work, the same on every retry: PostgreSQL's authentication
#: (class 28) or no such database (3D000); before a session exists there is no SQLSTATE, so
#: also the messages of a refused login and of a SQLite file that is no database.
WRONG_SETTING_SQLSTATES = ("28", "3D000")
WRONG_SETTING_MESSAGES = (
    "does not exist", "password authentication failed", "no password supplied",
    "file is not a database", "unable to open database file",
)
#: What psycopg says, before connecting, of a URL parameter it does not take or cannot read.
BAD_PARAMETER_MESSAGES = ("invalid URI query parameter", "invalid connection option", "bad value for",
                          "invalid sslmode value", "invalid integer value")


def driver_error(exc: BaseException) -> BaseException:
    """The driver's own error under a SQLAlchemy wrapper (or ``exc`` itself)."""
    from sqlalchemy.exc import DBAPIError

    return exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc


#: The most an error's line says (a constraint's DETAIL can quote a long key).
ONE_LINE_MAX = 500


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` of the error under SQLAlchemy's (not its dump of the
    statement and parameters), with PostgreSQL's ``DETAIL`` and ``CONTEXT`` when it sent them:
    the key a constraint refused, the COPY line and column a value did not fit."""
    from sqlalchemy.exc import StatementError

    cause = exc.orig if isinstance(exc, StatementError) and exc.orig is not None else exc
    lines = str(cause).strip().splitlines()
    text = f"{type(cause).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    diag = getattr(cause, "diag", None)
    for part in (getattr(diag, "message_detail", None), getattr(diag, "context", None)):
        if part and part.strip():
            text += "; " + " ".join(part.split())
    return text if len(text) <= ONE_LINE_MAX else text[: ONE_LINE_MAX - 1] + "…"


def failure_text(exc: BaseException) -> str:
    """What a failure record and the data team's alert say of an error: a database error as
    :func:`one_line` (SQLAlchemy's text adds the whole statement, thousands of characters),
    anything else as its message."""
    from sqlalchemy.exc import StatementError

    return one_line(exc) if isinstance(exc, StatementError) or database_error_classes(exc) else str(exc)


def database_error_classes(exc: BaseException) -> set[str]:
    """The class names of a database error, wrapped by SQLAlchemy or raised by the driver
    itself (``DataError``, ``OperationalError``, ...); empty for anything else."""
    from sqlalchemy.exc import DBAPIError

    if not isinstance(exc, DBAPIError) and type(exc).__module__.split(".")[0] not in DRIVER_MODULES:
        return set()
    return {cls.__name__ for cls in (*type(driver_error(exc)).__mro__, *type(exc).__mro__)}


def transient_database_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a database error that the same, idempotent work may not meet again:
    PostgreSQL's by SQLSTATE (none at all: no session, the server unreachable), SQLite's when
    the database is locked, and a connection broken under the driver. A missing table, a
    syntax error or a value out of range is not: it fails the same way every time."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    names = database_error_classes(exc)
    cause = driver_error(exc)
    sqlstate = getattr(cause, "sqlstate", None)
    if not names:
        return False
    if sqlstate:
        return sqlstate == UNIQUE_VIOLATION or sqlstate.startswith(TRANSIENT_SQLSTATES)
    if "InterfaceError" in names:
        return True
    if "OperationalError" not in names:
        return False
    if type(cause).__module__.startswith("sqlite3"):
        return any(message in str(cause) for message in SQLITE_BUSY)
    return True  # psycopg without a SQLSTATE: no session with the server


def permission_denied(exc: BaseException) -> bool:
    """Whether ``exc`` is PostgreSQL refusing the role a table (SQLSTATE 42501): the setting's
    role is wrong for the command, the same for every contract and every retry."""
    return bool(database_error_classes(exc)) and getattr(driver_error(exc), "sqlstate", None) == INSUFFICIENT_PRIVILEGE


def wrong_setting(exc: BaseException) -> bool:
    """Whether ``exc`` says the warehouse setting itself is wrong (a refused login, no such
    database, a file that is no SQLite database): an input error, not the server's trouble."""
    names = database_error_classes(exc)
    cause = driver_error(exc)
    sqlstate = str(getattr(cause, "sqlstate", None) or "")
    if not sqlstate and names & {"OperationalError", "ProgrammingError"} and any(
            s in str(cause) for s in BAD_PARAMETER_MESSAGES):
        return True  # a URL parameter, refused before any session
    if "OperationalError" not in names and type(cause).__name__ != "DatabaseError":
        return False  # "does not exist" of a missing table is another class (ProgrammingError)
    return sqlstate.startswith(WRONG_SETTING_SQLSTATES) or any(s in str(cause) for s in WRONG_SETTING_MESSAGES)
