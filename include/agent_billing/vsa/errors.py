"""Errors raised by the VSA client.

Every message names the host, the endpoint and the user so that an operator can act on it,
and never the personal access token, the session token or the ``Authorization`` header.
They derive from :class:`agent_billing.errors.UserError`, so the command line prints them as
one line without a traceback.
"""

from __future__ import annotations

from agent_billing.errors import UserError


class VsaError(UserError):
    """Base class of every VSA client error."""

    def __init__(
        self,
        message: str,
        *,
        host: str,
        endpoint: str | None = None,
        user: str | None = None,
    ) -> None:
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
        super().__init__(message, host=host, endpoint=endpoint, user=user)

    @property
    def transient(self) -> bool:
        """429 and 5xx may succeed later; any other status will not."""
        return self.status == 429 or self.status >= 500


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
    ) -> None:
        self.response_code = response_code
        self.error = error
        super().__init__(message, host=host, endpoint=endpoint, user=user)


class VsaMalformedResponse(VsaError):
    """The body is not the JSON envelope the API documents (HTML error page, truncated JSON...)."""


class VsaUnreachable(VsaError):
    """Connection refused, DNS failure, TLS failure or timeout (after any retries)."""


class InconsistentExtract(VsaError):
    """Records moved while paging: the pages do not add up to ``TotalRecords`` distinct ids."""

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
