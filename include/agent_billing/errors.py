"""Errors a user can act on: the command line prints them without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem with input, configuration or an external system, explained in the message."""

    exit_code = 2


class ConfigurationError(UserError):
    """A missing or invalid setting or connection."""
