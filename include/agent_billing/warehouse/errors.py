"""Database errors, told apart by their PEP 249 class: what the command line explains, and
which are passing trouble worth the same (idempotent) work again later."""

from __future__ import annotations

DRIVER_MODULES = ("psycopg", "sqlite3")  # raw driver errors escape SQLAlchemy (COPY)
#: PEP 249 classes of a database's passing trouble: a lost or refused connection, a server
#: restarting, a deadlock, a serialization failure, a lock timeout, SQLite's "database is
#: locked" (all OperationalError on psycopg and sqlite3), a connection broken under the driver.
TRANSIENT_CLASSES = frozenset({"OperationalError", "InterfaceError"})
#: A unique key taken by another run of the same work in the meantime (two billing runs racing
#: for one invoice): run again, it finds the other's rows and does nothing twice.
UNIQUE_VIOLATION = "23505"


def driver_error(exc: BaseException) -> BaseException:
    """The driver's own error under a SQLAlchemy wrapper (or ``exc`` itself)."""
    from sqlalchemy.exc import DBAPIError

    return exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc


def database_error_classes(exc: BaseException) -> set[str]:
    """The class names of a database error, wrapped by SQLAlchemy or raised by the driver
    itself (``DataError``, ``OperationalError``, ...); empty for anything else."""
    from sqlalchemy.exc import DBAPIError

    if not isinstance(exc, DBAPIError) and type(exc).__module__.split(".")[0] not in DRIVER_MODULES:
        return set()
    return {cls.__name__ for cls in (*type(driver_error(exc)).__mro__, *type(exc).__mro__)}


def transient_database_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a database error that the same, idempotent work may not meet again."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return bool(database_error_classes(exc) & TRANSIENT_CLASSES) or (
        getattr(driver_error(exc), "sqlstate", None) == UNIQUE_VIOLATION
    )
