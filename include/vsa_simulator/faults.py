"""Fault injection: what goes wrong between a VSA client and VSA, on demand and reproducibly.

Random faults draw from one RNG seeded with ``seed``, so a given request order always meets
the same faults. ``fail_next`` scripts exact outcomes for the next requests instead, which is
what tests want: ``FaultConfig(fail_next=[429, 503])`` fails the next two API requests, then
the server behaves.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from http import HTTPStatus
from typing import Any

SCRIPTED_KINDS = frozenset({"malformed", "error_in_200", "reset"})
_STATUSES = frozenset(s.value for s in HTTPStatus if s.value >= 200)


@dataclass(frozen=True)
class FaultConfig:
    """Which faults the simulator injects (all off by default).

    - ``latency_ms``: delay before every API answer (other requests proceed meanwhile).
    - ``rate_429`` / ``rate_5xx``: share of API requests answered 429 (with ``Retry-After:
      retry_after`` seconds) / 500, 502 or 503.
    - ``error_in_200_rate``: share answered HTTP 200 with ``ResponseCode`` 500 and an Error.
    - ``malformed_rate``: share of successful answers whose body is cut short (not JSON).
    - ``session_expires_after``: a session token dies after this many requests (then 401).
    - ``insert_during_paging``: after this many agent pages of one extraction (counted from
      ``$skip=0``), a new agent appears at the front of the AgentName order, so later pages
      shift by one and TotalRecords grows; ``insert_count`` times per simulated date (None =
      every extraction, so retries never succeed).
    - ``fail_next``: exact outcomes for the next API requests, in order: an HTTP status (200
      lets the request through, 429 carries Retry-After), or ``"malformed"``,
      ``"error_in_200"``, ``"reset"`` (connection dropped without an answer). With
      ``fail_path`` only requests whose path contains that text consume entries.
    Faults apply to every API request, ``/auth`` included, before authentication. To change
    one setting of a running server: ``server.set_faults(dataclasses.replace(server.faults, ...))``.
    """

    latency_ms: int = 0
    rate_429: float = 0.0
    retry_after: int = 1
    rate_5xx: float = 0.0
    error_in_200_rate: float = 0.0
    malformed_rate: float = 0.0
    session_expires_after: int | None = None
    insert_during_paging: int | None = None
    insert_count: int | None = 1
    fail_next: list[int | str] = field(default_factory=list)
    fail_path: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("rate_429", "rate_5xx", "error_in_200_rate", "malformed_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a share between 0 and 1, got {value!r}")
        for name, least in (("latency_ms", 0), ("retry_after", 0), ("seed", 0)):
            _check_int(name, getattr(self, name), least, optional=False)
        for name in ("session_expires_after", "insert_during_paging", "insert_count"):
            _check_int(name, getattr(self, name), 1, optional=True)
        for entry in self.fail_next:
            status_ok = not isinstance(entry, bool) and entry in _STATUSES
            if not (status_ok or entry in SCRIPTED_KINDS):
                raise ValueError(f"fail_next entries are HTTP statuses or one of {sorted(SCRIPTED_KINDS)}, got {entry!r}")
        if self.fail_path is not None and not isinstance(self.fail_path, str):
            raise ValueError("fail_path must be text")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultConfig:
        """From JSON (the ``/_sim/faults`` body); unknown keys are refused."""
        if not isinstance(data, dict):
            raise ValueError("faults must be a JSON object")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown fault settings {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_int(name: str, value: Any, least: int, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}{' or null' if optional else ''}, got {value!r}")


@dataclass(frozen=True)
class Fault:
    """One injected outcome: ``kind`` is ``status`` (with ``status``) or a scripted kind."""

    kind: str
    status: int = 200


class FaultInjector:
    """Decides, request by request, which fault (if any) a :class:`FaultConfig` calls for."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self._script: deque[int | str] = deque(config.fail_next)
        self._lock = threading.Lock()
        self._pages = 0
        self._inserted = 0

    def draw(self, path: str) -> Fault | None:
        """The fault for the next API request to ``path``: scripted entries first, then random."""
        c = self.config
        with self._lock:
            if self._script and (c.fail_path is None or c.fail_path.lower() in path.lower()):
                entry = self._script.popleft()
                if isinstance(entry, str):
                    return Fault(entry)
                return None if entry == 200 else Fault("status", entry)
            rng = self._rng
            if c.rate_429 and rng.random() < c.rate_429:
                return Fault("status", 429)
            if c.rate_5xx and rng.random() < c.rate_5xx:
                return Fault("status", rng.choice((500, 502, 503)))
            if c.error_in_200_rate and rng.random() < c.error_in_200_rate:
                return Fault("error_in_200")
            if c.malformed_rate and rng.random() < c.malformed_rate:
                return Fault("malformed")
        return None

    def pending(self) -> list[int | str]:
        """The scripted outcomes not yet used."""
        with self._lock:
            return list(self._script)

    def page_served(self, skip: int) -> bool:
        """Count one agents page; True when an agent should be inserted now (after this page)."""
        c = self.config
        if c.insert_during_paging is None:
            return False
        with self._lock:
            self._pages = 1 if skip == 0 else self._pages + 1
            if self._pages != c.insert_during_paging:
                return False
            if c.insert_count is not None and self._inserted >= c.insert_count:
                return False
            self._inserted += 1
            return True

    def new_day(self) -> None:
        """A new simulated date: paging counters and the insert budget start again."""
        with self._lock:
            self._pages = self._inserted = 0
