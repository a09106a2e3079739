"""Personal-access-token authentication: the Basic header, the session expiry, the token cache.

VSA exchanges ``Basic base64(user:PAT)`` at ``GET /api/v1.0/auth`` for a session token that is
sent as ``Bearer`` afterwards (reference §1). The session ends at ``SessionExpiration``, a
server-local time when it carries no zone, shifted to UTC by ``OffSetInMinutes`` (§1.5).
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

#: Renew this long before the reported expiry (what the official PowerShell module does).
RENEW_MARGIN = timedelta(minutes=1)


def basic_header(user: str, token: str) -> str:
    """``Authorization`` value for the PAT exchange (UTF-8, as the official module sends it)."""
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode("ascii")


def session_expiry(result: Mapping[str, Any]) -> datetime | None:
    """The session's end in UTC from an auth ``Result``, or None when absent or unparseable.

    A timestamp with a zone (``Z``, ``+02:00``) is taken as is; a zone-less one (the documented
    sample, ``2019-03-21T11:33:04.833``) is server-local time and ``OffSetInMinutes`` is added.
    """
    raw = result.get("SessionExpiration")
    if raw in (None, ""):
        return None
    try:
        when = datetime.fromisoformat(str(raw).strip())
    except ValueError:
        log.warning("VSA sent an unparseable SessionExpiration %r; renewing only on HTTP 401", raw)
        return None
    if when.tzinfo is not None:
        return when.astimezone(UTC)
    try:
        offset = float(result.get("OffSetInMinutes") or 0)
    except (TypeError, ValueError):
        offset = 0.0
    return (when + timedelta(minutes=offset)).replace(tzinfo=UTC)


class TokenCache:
    """One session token shared by all threads, renewed before expiry or after a 401.

    ``authenticate`` performs the exchange and returns ``(token, expiry_utc_or_None)``. Only one
    thread authenticates at a time; the others wait and reuse its token.
    """

    def __init__(
        self,
        authenticate: Callable[[], tuple[str, datetime | None]],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._authenticate = authenticate
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._valid_until: datetime | None = None
        self._uses = 0  # requests handed the current token
        self.sessions = 0  # how many times a session was opened (for logs and tests)

    def get(self) -> str:
        """The current token, opening a session if there is none or it is about to expire."""
        with self._lock:
            return self._current()

    def acquire(self) -> str:
        """The token for one request (counted: see :meth:`used_alone`)."""
        with self._lock:
            token = self._current()
            self._uses += 1
            return token

    def used_alone(self, token: str) -> bool:
        """Whether ``token`` is still the current session and only one request was given it.
        A 401 then is VSA refusing a fresh session; otherwise other requests in flight may
        have used the session up (a server that ends sessions after a few requests)."""
        with self._lock:
            return token == self._token and self._uses == 1

    def _current(self) -> str:
        now = self._clock()
        if self._token is None or (self._valid_until is not None and now >= self._valid_until):
            return self._open(now)
        return self._token

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (the server refused it) unless another thread already renewed it."""
        with self._lock:
            if self._token == token:
                self._token = None

    def clear(self) -> None:
        with self._lock:
            self._token = None

    def _open(self, now: datetime) -> str:
        token, expiry = self._authenticate()
        self.sessions += 1
        self._token = token
        self._uses = 0
        if expiry is None:
            self._valid_until = None
        elif expiry <= now:
            # Clock skew or an odd offset: renewing before every request would hammer /auth.
            log.warning(
                "VSA session expiry %s is not in the future; renewing only on HTTP 401", expiry
            )
            self._valid_until = None
        else:
            self._valid_until = expiry - min(RENEW_MARGIN, (expiry - now) / 2)
        log.debug(
            "VSA session opened, valid until %s", self._valid_until or "the server refuses it"
        )
        return token
