"""VSA sessions: a PAT (``Basic base64(user:token)``) buys a session token for ``Bearer`` use.

Both the short numeric ``Token`` and the long ``ApiToken`` of a session are accepted (clients
differ on which one they send, reference §1.4). A session dies when its time is up, when it
has served ``max_requests`` requests (a fault), or when all are expired at once.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import secrets
import threading
from dataclasses import dataclass
from typing import Any


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def basic_credentials_match(header: str, user: str, token: str) -> bool:
    """Whether an ``Authorization`` header is ``Basic base64(user:token)``, compared in constant time."""
    scheme, _, encoded = header.partition(" ")
    try:
        given_user, _, given_token = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except ValueError:  # bad base64 or UTF-8
        return False
    same_user = hmac.compare_digest(given_user.encode(), user.encode())
    same_token = hmac.compare_digest(given_token.encode(), token.encode())
    return scheme.lower() == "basic" and same_user and same_token


@dataclass
class _Session:
    token: str
    api_token: str
    expires: dt.datetime  # UTC
    used: int = 0


class SessionStore:
    """Live sessions, by either of their tokens.

    ``SessionExpiration`` is reported in server-local time, ``offset_minutes`` behind UTC,
    with ``OffSetInMinutes`` = ``offset_minutes`` (as Kaseya's sample reads).
    """

    def __init__(self, minutes: int = 30, offset_minutes: int = 0) -> None:
        self.minutes, self.offset_minutes = minutes, offset_minutes
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def open(self, user: str) -> dict[str, Any]:
        """A new session: the ``Result`` of ``GET /auth``."""
        now = _utcnow()
        with self._lock:
            for stale in [s for s in self._sessions.values() if s.expires <= now]:
                self._drop(stale)
            token = str(10_000_000 + secrets.randbelow(90_000_000))  # short numeric, as in the sample
            while token in self._sessions:
                token = str(10_000_000 + secrets.randbelow(90_000_000))
            session = _Session(token, base64.b64encode(secrets.token_bytes(36)).decode(),
                               now + dt.timedelta(minutes=self.minutes))
            self._sessions[session.token] = self._sessions[session.api_token] = session
        local = session.expires - dt.timedelta(minutes=self.offset_minutes)
        return {
            "TenantId": "1",
            "Token": session.token,
            "UserName": user,
            "RoleId": 2,
            "ScopeId": "2",
            "AdminId": 61874420,
            "MachineId": None,
            "MachineGroupName": None,
            "SessionExpiration": f"{local:%Y-%m-%dT%H:%M:%S}.{local.microsecond // 1000:03d}",
            "CultureInfo": "en-US",
            "TimePref": "Browser",
            "OffSetInMinutes": self.offset_minutes,
            "ApiToken": session.api_token,
            "Attributes": None,
        }

    def check(self, header: str, max_requests: int | None = None) -> bool:
        """Whether ``header`` is ``Bearer <live token>``; counts the request against the session."""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        with self._lock:
            session = self._sessions.get(token.strip())
            if session is None:
                return False
            if _utcnow() >= session.expires or (max_requests is not None and session.used >= max_requests):
                self._drop(session)
                return False
            session.used += 1
            return True

    def expire_all(self) -> None:
        with self._lock:
            self._sessions.clear()

    def _drop(self, session: _Session) -> None:
        self._sessions.pop(session.token, None)
        self._sessions.pop(session.api_token, None)
