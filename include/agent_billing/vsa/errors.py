"""Errors raised by the VSA client.

Every message names the host, the endpoint and the user so that an operator can act on it,
and never the personal access token, the session token or the ``Authorization`` header.
They derive from :class:`agent_billing.errors.UserError`, so the command line prints them as
one line without a traceback.
"""

from __future__ import annotations

from agent_billing.errors import UserError


class VsaError(UserError):
    """Base class of every VSA client error.

    ``transient`` tells the client's retry policy whether the same request may succeed later.
    """

    transient = False

    def __init__(
        self,
        message: str,
        *,
        host: str,
        endpoint: str | None = None,
        user: str | None = None,
        transient: bool | None = None,
    ) -> None:
        if transient is not None:
            self.transient = transient
        self.message = message
        self.host = host
        self.endpoint = endpoint
        self.user = user
        where = [f"host {host}"]
        if endpoint:
            where.append(f"endpoint {endpoint}")
        if user:
            where.append(f"user {user!r}")
        super().__init__(f"{message} ({', '.join(where)})")


class VsaAuthError(VsaError):
    """The server refused the credentials or the session (bad user/token, scope, IP allow-list)."""


class VsaHttpError(VsaError):
    """An HTTP error status (after any retries)."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        retry_after: float | None = None,
        host: str,
        endpoint: str | None = None,
        user: str | None = None,
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        # 429 and 5xx may succeed later; any other status will not.
        transient = status == 429 or status >= 500
        super().__init__(message, host=host, endpoint=endpoint, user=user, transient=transient)


class VsaApiError(VsaError):
    """HTTP 200 whose envelope carries ``ResponseCode`` ≠ 0; ``error`` is the server's text."""

    def __init__(
        self,
        message: str,
        *,
        response_code: object,
        error: str,
        host: str,
        endpoint: str | None = None,
        user: str | None = None,
        transient: bool = False,
    ) -> None:
        self.response_code = response_code
        self.error = error
        super().__init__(message, host=host, endpoint=endpoint, user=user, transient=transient)


class VsaMalformedResponse(VsaError):
    """The body is not the JSON envelope the API documents (HTML error page, truncated JSON...).

    Transient: a loaded server sometimes sends garbage that a second request does not.
    """

    transient = True


class VsaUnreachable(VsaError):
    """Connection refused, DNS failure, timeout (transient) or TLS failure (not transient)."""

    transient = True


class InconsistentExtract(VsaError):
    """Records moved while paging in every pass: the pages do not join or do not add up to
    ``TotalRecords`` distinct ids. Transient: VSA settles (a task's retries read it again)."""

    transient = True

    def __init__(
        self,
        message: str,
        *,
        expected: int | None = None,
        seen: int | None = None,
        host: str,
        endpoint: str | None = None,
        user: str | None = None,
    ) -> None:
        self.expected = expected
        self.seen = seen
        super().__init__(message, host=host, endpoint=endpoint, user=user)
