"""Errors a user can act on: the command line prints them as one line, without a traceback.

Exit codes of ``agent-billing`` (README "Exit codes and errors"): 0 success, 1 failure (an
external system or a step failed; re-running later may succeed), 2 bad input or usage (the
command cannot succeed until the user changes an argument, a file or a setting).
"""

from __future__ import annotations

import errno
from pathlib import Path

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class UserError(Exception):
    """A problem with input, configuration or an external system, explained in the message."""

    exit_code = EXIT_BAD_INPUT


class ConfigurationError(UserError):
    """A missing or invalid setting or connection."""


class WarehouseUnavailable(UserError):
    """The warehouse cannot be reached or opened (server down, refused, locked)."""

    exit_code = EXIT_FAILURE


class SchemaOutOfDate(ConfigurationError):
    """The warehouse has no schema, or an older or unknown revision: ``db upgrade`` fixes it."""


class OperationFailed(UserError):
    """A step failed for a reason the message explains (not a bug, not the user's input)."""

    exit_code = EXIT_FAILURE


#: What an ``OSError`` on a path the user gave means when it is theirs to fix (exit 2); any other
#: (a full disk, an I/O error) is the system's trouble, and a later run may succeed (exit 1).
PATH_MISTAKES = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM,
                           errno.EROFS, errno.EEXIST, errno.ENAMETOOLONG})


def cannot_write(path: Path | str, exc: OSError) -> UserError:
    """``cannot write PATH: why``, with the exit code of its cause."""
    error = UserError(f"cannot write {path}: {exc.strerror or exc}")
    if exc.errno not in PATH_MISTAKES:
        error.exit_code = EXIT_FAILURE
    return error
