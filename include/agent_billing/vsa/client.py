"""Kaseya VSA REST API client: PAT auth, bounded retries, concurrent and consistent paging.

It follows the VSA REST API reference note (``vsa-rest-api.md``): the envelope (§2), the
100-record page cap and ``$orderby`` (§3), the endpoints and their sortable fields (§4), ids of
up to 26 digits (§4.7). Records come back as :class:`~agent_billing.vsa.records.VsaRecord`:
a dict of fields whose ids are exact decimal strings, plus ``.raw``, the server's JSON text.

Collections are read in passes. A pass pages with ``$skip``/``$top`` in ``$orderby`` order; after
the first page has told it ``TotalRecords`` and the server's real page size, it fetches the
remaining pages concurrently in a sliding window and yields them in order. Each page after the
first starts one record early, on the last record of the page before it. A pass is consistent
when every page reports the same total, each page's first record is the record the page before
it ended on, and the records hold exactly that many distinct ids; otherwise records moved
while paging, and :meth:`VsaClient.extract` starts over. (Without the overlap, an agent deleted
from a page already read and another added further on keep the total, shift the later pages
back by one, and the agent at the page boundary is never read.)
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from difflib import get_close_matches
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import requests
import tenacity
from requests.adapters import HTTPAdapter
from urllib3 import exceptions as urllib3_errors
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

from agent_billing import __version__
from agent_billing.connections import ConnectionInfo, as_bool, get_connection
from agent_billing.errors import ConfigurationError
from agent_billing.vsa.auth import TokenCache, basic_header, session_expiry
from agent_billing.vsa.errors import (
    InconsistentExtract,
    VsaApiError,
    VsaAuthError,
    VsaError,
    VsaHttpError,
    VsaMalformedResponse,
    VsaUnreachable,
)
from agent_billing.vsa.records import VsaRecord, parse_envelope

log = logging.getLogger(__name__)

T = TypeVar("T")
E = TypeVar("E", bound=VsaError)

API_PREFIX = "/api/v1.0"
#: The server returns at most this many records per request, whatever ``$top`` asks.
MAX_PAGE_SIZE = 100
#: Upper bound on a server-sent ``Retry-After``, so a bad header cannot stall a run for hours.
MAX_RETRY_AFTER = 300.0
#: Renewals one request may go through when others keep using up the fresh sessions.
MAX_SESSION_RENEWALS = 20
#: A session token goes back in a header: visible ASCII only (RFC 9110 field value, no spaces).
_SENDABLE_TOKEN = re.compile(r"[\x21-\x7e]+")
#: Shorter secrets are not hidden in error texts (they would blank out ordinary words).
MIN_HIDDEN_SECRET = 3
#: Log progress at INFO every this many pages.
PROGRESS_EVERY = 10

ResourceName = Literal["orgs", "machine_groups", "agents", "views", "agents_in_view"]


@dataclass(frozen=True)
class Resource:
    """A paged collection: its path, the field that identifies a record, a stable sort."""

    path: str
    id_field: str
    order_by: str


#: Sort keys are the unique, sortable fields of reference §4 (``AgentId`` is not sortable).
RESOURCES: dict[str, Resource] = {
    "orgs": Resource("/system/orgs", "OrgId", "OrgRef asc"),
    "machine_groups": Resource("/system/machinegroups", "MachineGroupId", "MachineGroupName asc"),
    "agents": Resource("/assetmgmt/agents", "AgentId", "AgentName asc"),
    "views": Resource("/system/views", "ViewDefId", "ViewDefName asc"),
    "agents_in_view": Resource("/assetmgmt/agentsinview/{view_id}", "AgentId", "AgentName asc"),
}

#: Each numeric extra: its type and range (floats are seconds: 30000 is milliseconds typed as seconds).
_NUMBER_OPTIONS: dict[str, tuple[type, float, float | None]] = {
    "page_size": (int, 1, None), "max_concurrency": (int, 1, 64), "max_retries": (int, 0, 20),
    "extract_attempts": (int, 1, 10), "timeout": (float, 0.001, 600), "backoff_base": (float, 0, 60),
    "backoff_max": (float, 0, 600), "retry_deadline": (float, 0.001, 3600),
}
_BOOL_OPTIONS = {"verify_ssl": True, "allow_plain_http": False}


def id_filter(field: str, ids: Iterable[str | int]) -> str:
    """``$filter`` matching any of ``ids``: ``MachineGroupId eq 123M or MachineGroupId eq 456M``.

    Decimal ids need the ``M`` suffix, or the server reads the literal as Int32 and answers 400
    (reference §3). Ids must be decimal digits; several are parenthesised for use with ``and``.
    """
    terms = []
    for value in ids:
        text = str(value).strip()
        if not text.isdigit() or not text.isascii():
            raise ValueError(f"not a decimal id: {value!r}")
        terms.append(f"{field} eq {text}M")
    if not terms:
        raise ValueError("id_filter needs at least one id")
    return terms[0] if len(terms) == 1 else "(" + " or ".join(terms) + ")"


class VsaClient:
    """A VSA REST API session for one user and personal access token; thread-safe.

    :param base_url: the VSA server, e.g. ``https://vsa.example.com`` (the API is under
        ``/api/v1.0``; a URL that already ends with it is accepted).
    :param page_size: ``$top`` per request; capped at 100, the server's own limit.
    :param max_concurrency: requests in flight at once, over all threads using this client.
    :param timeout: seconds to connect and, separately, to wait for a response.
    :param max_retries: retries of one request on 429, 5xx, connection errors, timeouts and
        malformed bodies, with exponential backoff from ``backoff_base`` up to ``backoff_max``
        seconds (a ``Retry-After`` header replaces the backoff).
    :param retry_deadline: seconds after which one request stops being retried, whatever
        ``max_retries`` allows: a VSA that hangs fails an extract in about this long (default
        60 s) instead of ``(max_retries + 1) × timeout`` plus backoff.
    :param extract_attempts: passes :meth:`extract` makes over a collection that keeps moving.
    """

    def __init__(
        self,
        base_url: str,
        user: str,
        token: str,
        *,
        page_size: int = 100,
        max_concurrency: int = 8,
        timeout: float = 30.0,
        verify_ssl: bool = True,
        allow_plain_http: bool = False,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        retry_deadline: float = 60.0,
        extract_attempts: int = 3,
    ) -> None:
        if not user or not token:
            raise ConfigurationError("a VSA user and a personal access token are required")
        if page_size < 1 or max_concurrency < 1 or extract_attempts < 1 or max_retries < 0:
            raise ConfigurationError(
                "page_size, max_concurrency and extract_attempts must be ≥ 1, max_retries ≥ 0"
            )
        if timeout <= 0 or retry_deadline <= 0 or backoff_base < 0 or backoff_max < 0:
            raise ConfigurationError("timeout and retry_deadline must be > 0 and backoff times ≥ 0")
        self.base_url = _normalise_base_url(base_url, allow_plain_http)
        self.user = user
        self.page_size = min(page_size, MAX_PAGE_SIZE)
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.verify_ssl = verify_ssl
        self.max_retries = max_retries
        self.extract_attempts = extract_attempts
        self._basic = basic_header(user, token)
        # What an error text must never show: the PAT, the Basic credentials, the session tokens.
        self._secrets = {token, self._basic.removeprefix("Basic ")}
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._session = requests.Session()
        self._session.headers.update(
            {"Accept": "application/json", "User-Agent": f"agent-billing/{__version__}"}
        )
        # No transport-level retries: the tenacity policy below sees every failure once.
        adapter = HTTPAdapter(pool_maxsize=max_concurrency, max_retries=Retry(0, read=False))
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._tokens = TokenCache(self._open_session)
        self._backoff = tenacity.wait_exponential_jitter(
            initial=backoff_base, max=backoff_max, jitter=backoff_base
        )
        self.retry_deadline = retry_deadline
        self._retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(max_retries + 1) | tenacity.stop_after_delay(retry_deadline),
            wait=self._wait,
            retry=tenacity.retry_if_exception(
                lambda exc: isinstance(exc, VsaError) and exc.transient
            ),
            before_sleep=self._log_retry,
            reraise=True,
        )

    def __repr__(self) -> str:
        return f"VsaClient(base_url={self.base_url!r}, user={self.user!r})"

    # -- construction from a connection -------------------------------------------------------

    @classmethod
    def from_connection(cls, conn: ConnectionInfo, **overrides: Any) -> VsaClient:
        """Build from an Airflow-style connection: host = base URL, login = user, password = PAT.

        A host without a scheme (URI form ``http://user:pat@127.0.0.1:8765``) is rebuilt from
        ``conn_type`` (``http``/``https``; anything else means https) and ``port``. Extras:
        ``page_size``, ``max_concurrency``, ``timeout``, ``verify_ssl``, ``allow_plain_http`` (plain
        HTTP to a host other than this machine: the token is sent unencrypted) and the retry settings
        ``max_retries``, ``backoff_base``, ``backoff_max``, ``extract_attempts``. Keyword
        ``overrides`` take precedence over the extras.
        """
        if not conn.host:
            bare = conn.uri is not None and "://" not in conn.uri  # a host name alone reads as a path
            raise ConfigurationError(
                f"connection {conn.conn_id!r} has no host (the VSA base URL)"
                + (": write it as a URI with its scheme, https://user:token@vsa.example.com, or in JSON form"
                   if bare else "")
            )
        if not conn.login or not conn.password:
            raise ConfigurationError(
                f"connection {conn.conn_id!r} needs a login (the VSA user) and a password "
                "(the user's personal access token)"
            )
        return cls(
            _base_url_from_connection(conn),
            conn.login,
            conn.password,
            **(_options_from_extra(conn.conn_id, conn.extra) | overrides),
        )

    @classmethod
    def from_env(cls, conn_id: str = "vsa_default") -> VsaClient:
        """Build from ``AIRFLOW_CONN_<CONN_ID>`` (URI or JSON form) without importing Airflow."""
        return cls.from_connection(get_connection(conn_id))

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> VsaClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- public API ---------------------------------------------------------------------------

    def authenticate(self) -> None:
        """Open a fresh session now (to check the credentials early)."""
        self._tokens.clear()
        self._retrying(self._tokens.get)

    def extract(
        self,
        resource: ResourceName,
        consume: Callable[[PassRecords], T],
        *,
        filter: str | None = None,
        view_id: str | None = None,
    ) -> T:
        """Read a whole collection consistently and return what ``consume`` made of it.

        ``consume`` gets one pass's records (:class:`PassRecords`, with the server's ``total``)
        and is called again from scratch
        when records moved during the pass (up to ``extract_attempts`` passes), so it must
        start afresh on each call (e.g. truncate the file it writes) and let the iterator's
        exceptions propagate. If it stops early the rest is still read, to check the pass.
        :raises InconsistentExtract: when every pass drifted.
        """
        res, path = _resolve(resource, view_id)
        for attempt in range(1, self.extract_attempts + 1):
            records = PassRecords(_Pass(self, res, path, filter))
            try:
                result = consume(records)
                for _ in records:
                    pass
                return result
            except InconsistentExtract as exc:
                last = exc
                log.warning("%s (pass %d of %d)", exc, attempt, self.extract_attempts)
            finally:
                records.close()
        raise self._error(
            InconsistentExtract,
            f"{self.extract_attempts} passes failed, the last one: {last.message}",
            f"GET {path}",
            expected=last.expected,
            seen=last.seen,
        )

    def iter_records(
        self, resource: ResourceName, *, filter: str | None = None, view_id: str | None = None
    ) -> Iterator[VsaRecord]:
        """One pass over a collection, streamed; raises :class:`InconsistentExtract` on drift
        (by the end at the latest), without retrying: use :meth:`extract` for that."""
        res, path = _resolve(resource, view_id)
        return _Pass(self, res, path, filter).run()

    def iter_orgs(self) -> Iterator[VsaRecord]:
        return self.iter_records("orgs")

    def iter_machine_groups(self) -> Iterator[VsaRecord]:
        return self.iter_records("machine_groups")

    def iter_agents(self, filter: str | None = None) -> Iterator[VsaRecord]:
        return self.iter_records("agents", filter=filter)

    def iter_views(self) -> Iterator[VsaRecord]:
        return self.iter_records("views")

    def iter_agents_in_view(self, view_id: str, filter: str | None = None) -> Iterator[VsaRecord]:
        return self.iter_records("agents_in_view", filter=filter, view_id=view_id)

    def count(
        self, resource: ResourceName, *, filter: str | None = None, view_id: str | None = None
    ) -> int:
        """``TotalRecords`` of a collection, read with ``$top=1``."""
        _, path = _resolve(resource, view_id)
        params: dict[str, Any] = {"$top": 1, "$skip": 0}
        if filter:
            params["$filter"] = filter
        total, _ = self._get_page(path, params)
        return total

    def count_agents(self, filter: str | None = None, view_id: str | None = None) -> int:
        """Agents matching ``filter`` (see :func:`id_filter`), in view ``view_id`` if given."""
        if view_id is not None:
            return self.count("agents_in_view", filter=filter, view_id=view_id)
        return self.count("agents", filter=filter)

    def get_agent(self, agent_id: str | int) -> VsaRecord:
        path = f"/assetmgmt/agents/{quote(str(agent_id).strip(), safe='')}"
        envelope = self._retrying(self._get_once, path, {})
        result = envelope.get("Result")
        if not isinstance(result, VsaRecord):
            raise self._error(
                VsaMalformedResponse, "the response holds no agent record", f"GET {path}"
            )
        return result

    # -- requests -----------------------------------------------------------------------------

    def _get_page(self, path: str, params: Mapping[str, Any]) -> tuple[int, list[VsaRecord]]:
        """One page of a collection, with retries: ``(TotalRecords, records)``."""
        return self._retrying(self._get_page_once, path, params)

    def _get_page_once(self, path: str, params: Mapping[str, Any]) -> tuple[int, list[VsaRecord]]:
        envelope = self._get_once(path, params)
        records = envelope.get("Result")
        try:
            total = int(str(envelope.get("TotalRecords")))
        except ValueError:
            total = -1
        if total < 0 or not isinstance(records, list):
            raise self._error(
                VsaMalformedResponse,
                "the response is not a collection (no TotalRecords or no Result list)",
                _endpoint(path, params),
            )
        return total, records

    def _get_once(self, path: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """One authenticated GET; on a 401, re-authenticate and repeat it.

        Only a 401 on a session no other request used means VSA refuses fresh sessions (rights,
        scope). A 401 on a session that other requests shared means the session ended
        meanwhile (expiry, logout, or a server that ends sessions after a few requests while
        ``max_concurrency`` requests share it): renew and repeat, a bounded number of times.
        """
        endpoint = _endpoint(path, params)
        for _ in range(MAX_SESSION_RENEWALS):
            token = self._tokens.acquire()
            response = self._send(path, params, f"Bearer {token}")
            if response.status_code != 401:
                return self._decode(response, endpoint)
            if self._tokens.used_alone(token):
                raise self._error(
                    VsaAuthError,
                    "VSA refused a fresh session (HTTP 401) on its first request; check the "
                    "user's rights and scope",
                    endpoint,
                )
            log.info("VSA ended the session before %s (HTTP 401); re-authenticating", endpoint)
            self._tokens.invalidate(token)
        raise self._error(
            VsaAuthError,
            f"VSA ended {MAX_SESSION_RENEWALS} sessions in a row before this request could use "
            f"one (HTTP 401): it may end sessions after fewer requests than the "
            f"{self.max_concurrency} this client sends at once; lower max_concurrency in the "
            "connection extras",
            endpoint,
            transient=True,
        )

    def _open_session(self) -> tuple[str, datetime | None]:
        """The PAT exchange (``TokenCache`` calls this under its lock)."""
        endpoint = "GET /auth"
        response = self._send("/auth", {}, self._basic)
        if response.status_code in (401, 403):
            detail = _error_text(response, self._without_secrets)
            raise self._error(
                VsaAuthError,
                f"authentication refused (HTTP {response.status_code}"
                f"{': ' + detail if detail else ''}); check the user and the personal access token",
                endpoint,
            )
        try:
            envelope = self._decode(response, endpoint)
        except VsaApiError as exc:
            if exc.transient:  # a server fault or throttling inside HTTP 200: retried, not a bad token
                raise
            raise self._error(
                VsaAuthError, f"authentication refused: {exc.error}", endpoint
            ) from None
        result = envelope.get("Result")
        token = (
            (result.get("Token") or result.get("ApiToken")) if isinstance(result, Mapping) else None
        )
        if not token:
            raise self._error(VsaAuthError, "authentication returned no session token", endpoint)
        token = str(token)
        self._secrets.add(token)
        if not _SENDABLE_TOKEN.fullmatch(token):
            # requests would refuse the header and quote the token in its error.
            raise self._error(
                VsaMalformedResponse,
                "authentication returned a session token with spaces or control characters, "
                "which cannot be sent back; check what answers at this address (a proxy?)",
                endpoint,
            )
        log.debug("authenticated to %s as %s", self.base_url, self.user)
        return token, session_expiry(result)

    def _send(self, path: str, params: Mapping[str, Any], authorization: str) -> _Answer:
        """One GET, its body read within ``retry_deadline`` of the request (``timeout`` bounds
        each wait for bytes, so a server sending a byte now and then would hold it forever).
        Redirects are not followed: ``requests`` drops the credentials on a redirect to another
        host, and one from http to https has already sent them in clear."""
        url = self.base_url + API_PREFIX + path
        if params:
            url += "?" + urlencode(params, quote_via=quote, safe="$'(),")
        endpoint = _endpoint(path, params)
        with self._slots:
            deadline = time.monotonic() + self.retry_deadline
            try:
                response = self._session.get(
                    url,
                    headers={"Authorization": authorization},
                    timeout=self.timeout,
                    verify=self.verify_ssl,
                    allow_redirects=False,
                    stream=True,
                )
                try:
                    body = self._read(response, deadline, endpoint)
                except BaseException:
                    response.close()
                    raise
                response.raw.release_conn()  # read whole: the connection is kept for the next
                return _Answer(response.status_code, response.reason, response.headers, body)
            except requests.exceptions.SSLError as exc:
                raise self._error(
                    VsaUnreachable, f"TLS failure: {_reason(exc)}", endpoint, transient=False
                ) from exc
            except (requests.Timeout, urllib3_errors.ReadTimeoutError) as exc:
                raise self._error(
                    VsaUnreachable, f"no response within {self.timeout:g}s", endpoint
                ) from exc
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                    urllib3_errors.ProtocolError) as exc:
                raise self._error(
                    VsaUnreachable, f"cannot reach VSA: {_reason(exc)}", endpoint
                ) from exc
            except (requests.RequestException, urllib3_errors.HTTPError) as exc:  # e.g. a body its
                # Content-Encoding cannot decode
                raise self._error(
                    VsaMalformedResponse, f"unreadable answer: {_reason(exc)}", endpoint
                ) from exc

    def _read(self, response: requests.Response, deadline: float, endpoint: str) -> bytes:
        """The body, whatever has arrived at each read (``iter_content`` would wait for a whole
        chunk), until ``deadline``."""
        body = bytearray()
        while chunk := response.raw.read1(1 << 16, decode_content=True):
            body += chunk
            if time.monotonic() > deadline:
                raise self._error(
                    VsaUnreachable,
                    f"the answer did not arrive within {self.retry_deadline:g}s ({len(body)} bytes so far)",
                    endpoint,
                )
        return bytes(body)

    def _decode(self, response: _Answer, endpoint: str) -> dict[str, Any]:
        """The envelope of a response, or the error it stands for."""
        status = response.status_code
        if 300 <= status < 400:
            where = response.headers.get("Location") or "no Location"
            raise self._error(
                VsaHttpError,
                f"HTTP {status}: VSA redirects to {where}; set the connection's host to the address "
                "VSA answers on (a redirect is not followed: it would drop or expose the credentials)",
                endpoint,
                status=status,
            )
        if status >= 400:
            detail = _error_text(response, self._without_secrets)
            raise self._error(
                VsaHttpError,
                f"HTTP {status} {response.reason or ''}".rstrip()
                + (f": {detail}" if detail else ""),
                endpoint,
                status=status,
                retry_after=_retry_after(response),
            )
        body = response.content
        try:
            envelope = parse_envelope(body.decode("utf-8-sig"))
        except ValueError as exc:
            kind = response.headers.get("Content-Type") or "no content type"
            raise self._error(
                VsaMalformedResponse,
                f"malformed response (HTTP {status}, {kind}, {len(body)} bytes): {exc}",
                endpoint,
            ) from None
        code = envelope.get("ResponseCode")
        if code is not None and not _succeeded(code):
            error = str(envelope.get("Error") or envelope.get("Status") or "no error text")
            raise self._error(
                VsaApiError,
                f"VSA error {code}: {error}",
                endpoint,
                response_code=code,
                error=error,
                transient=_server_side(code),
            )
        return envelope

    # -- retry policy -------------------------------------------------------------------------

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """Seconds before the next try: the server's ``Retry-After`` if any, else backoff."""
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER)
        return self._backoff(state)

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "%s; retry %d of %d in %.2fs", exc, state.attempt_number, self.max_retries, delay
        )

    def _error(self, cls: type[E], message: str, endpoint: str | None, **kwargs: Any) -> E:
        """An error of ``cls`` whose texts hide every credential (a server or proxy may quote
        the ``Authorization`` header it received in its error text)."""
        if isinstance(kwargs.get("error"), str):
            kwargs["error"] = self._without_secrets(kwargs["error"])
        return cls(
            self._without_secrets(message),
            host=self.base_url,
            endpoint=endpoint,
            user=self.user,
            **kwargs,
        )

    def _without_secrets(self, text: str) -> str:
        """``text`` with every credential hidden, also as a URL or a JSON string quotes it."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            if len(secret) >= MIN_HIDDEN_SECRET:
                for form in (secret, quote(secret, safe=""), secret.replace("/", "\\/")):
                    text = text.replace(form, "***")
        return text


@dataclass(frozen=True)
class _Answer:
    """An HTTP answer, its body read whole (named as ``requests.Response`` names them)."""

    status_code: int
    reason: str | None
    headers: Mapping[str, str]
    content: bytes


class PassRecords(Iterator[VsaRecord]):
    """The records of one pass, streamed; ``total`` is the server's ``TotalRecords`` (known
    once the first page has arrived)."""

    def __init__(self, one_pass: _Pass) -> None:
        self._pass = one_pass
        self._records = one_pass.run()

    def __next__(self) -> VsaRecord:
        return next(self._records)

    def close(self) -> None:
        self._records.close()

    @property
    def total(self) -> int:
        return self._pass.total


class _Pass:
    """One pass over a collection: paging, the in-order window, the consistency checks."""

    def __init__(
        self, client: VsaClient, resource: Resource, path: str, filter: str | None
    ) -> None:
        self.client = client
        self.resource = resource
        self.path = path
        self.filter = filter
        self.endpoint = f"GET {path}"
        self.total = 0
        self.pos = 0  # records up to this position (in $orderby order) have been taken
        self.last_id: str | None = None  # the id of the record at pos - 1
        self.overlap = False  # pages start one record early (pages of one record cannot)
        self.pages = 0
        self.seen: set[str] = set()
        self.started = time.monotonic()

    def run(self) -> Generator[VsaRecord, None, None]:
        total, records = self.fetch(0)
        self.total = total
        yield from self.take(0, total, records)
        step = len(records)  # the server's real page size, whatever $top asked
        self.overlap = step > 1
        if step:
            yield from self.rest(step)
        yield from self.fill(total)
        if len(self.seen) != total:
            raise self.drift("the pages do not add up to TotalRecords")
        log.log(
            logging.INFO if self.pages > 1 else logging.DEBUG,
            "%s: %d records in %d pages, %.1fs",
            self.endpoint,
            total,
            self.pages,
            time.monotonic() - self.started,
        )

    def rest(self, step: int) -> Iterator[VsaRecord]:
        """Pages after the first, fetched concurrently and yielded in order, each starting on
        the last record of the one before (``step - 1`` apart)."""
        stride = step - 1 if self.overlap else step
        skips = iter(range(stride, self.total - 1 if self.overlap else self.total, stride))
        window: deque[tuple[int, Future[tuple[int, list[VsaRecord]]]]] = deque()
        pool = ThreadPoolExecutor(self.client.max_concurrency, thread_name_prefix="vsa-page")

        def submit() -> None:
            skip = next(skips, None)
            if skip is not None:
                window.append((skip, pool.submit(self.fetch, skip)))

        try:
            # Twice the concurrency keeps every slot busy while the consumer works, and bounds
            # memory to that many pages.
            for _ in range(2 * self.client.max_concurrency):
                submit()
            while window:
                skip, future = window.popleft()
                total, records = future.result()
                submit()
                yield from self.fill(skip + 1 if self.overlap else skip)  # the page's first record taken
                yield from self.take(skip, total, records)
        finally:
            # Do not wait for requests in flight: their results are simply dropped.
            pool.shutdown(wait=False, cancel_futures=True)

    def fill(self, upto: int) -> Iterator[VsaRecord]:
        """Fetch ``[pos, upto)`` one page at a time (overlapping the last record taken): a
        page came back shorter than the others."""
        while self.pos < upto:
            skip = self.pos - 1 if self.overlap else self.pos
            total, records = self.fetch(skip)
            if len(records) <= self.pos - skip:
                raise self.drift(f"no records at $skip={self.pos}")
            yield from self.take(skip, total, records)

    def take(self, skip: int, total: int, records: list[VsaRecord]) -> Iterator[VsaRecord]:
        """Yield the records of the page at ``skip`` that lie at or after ``pos``."""
        self.pages += 1
        if total != self.total:
            raise self.drift(f"TotalRecords changed from {self.total} to {total}")
        id_field = self.resource.id_field
        before = self.pos - skip  # records of this page already taken (the overlap)
        if 0 < before <= len(records) and records[before - 1].get(id_field) != self.last_id:
            raise self.drift(
                f"the record before $skip={self.pos} is {records[before - 1].get(id_field)}, "
                f"no longer {self.last_id}"
            )
        for record in records[before:]:
            record_id = record.get(id_field)
            if record_id is None:
                raise self.client._error(
                    VsaMalformedResponse, f"a record has no {id_field}", self.endpoint
                )
            if record_id in self.seen:
                raise self.drift(f"{id_field} {record_id} came twice")
            self.seen.add(record_id)
            self.last_id = record_id
            yield record
        self.pos = max(self.pos, skip + len(records))
        if self.pages % PROGRESS_EVERY == 0:
            log.info("%s: %d of %d records", self.endpoint, len(self.seen), self.total)

    def fetch(self, skip: int) -> tuple[int, list[VsaRecord]]:
        params: dict[str, Any] = {
            "$top": self.client.page_size,
            "$skip": skip,
            "$orderby": self.resource.order_by,
        }
        if self.filter:
            params["$filter"] = self.filter
        return self.client._get_page(self.path, params)

    def drift(self, what: str) -> InconsistentExtract:
        return self.client._error(
            InconsistentExtract,
            f"records moved while paging ({what}): expected {self.total} distinct "
            f"{self.resource.id_field}, got {len(self.seen)}",
            self.endpoint,
            expected=self.total,
            seen=len(self.seen),
        )


# -- helpers ---------------------------------------------------------------------------------


def _resolve(resource: str, view_id: str | None) -> tuple[Resource, str]:
    try:
        res = RESOURCES[resource]
    except KeyError:
        raise ValueError(
            f"unknown VSA resource {resource!r}; known: {', '.join(RESOURCES)}"
        ) from None
    if "{view_id}" in res.path:
        if view_id is None or not str(view_id).strip():
            raise ValueError(f"resource {resource!r} needs a view_id")
        return res, res.path.format(view_id=quote(str(view_id).strip(), safe=""))
    return res, res.path


def _endpoint(path: str, params: Mapping[str, Any]) -> str:
    """How errors and logs name a request: method, path and readable query (no secrets)."""
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return f"GET {path}" + (f"?{query}" if query else "")


def _normalise_base_url(base_url: str, allow_plain_http: bool = False) -> str:
    url = base_url.strip().rstrip("/")
    if url.lower().endswith(API_PREFIX):
        url = url[: -len(API_PREFIX)]
    shape = f"VSA base URL {base_url!r} must look like https://vsa.example.com"
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed IPv6 bracket
        raise ConfigurationError(shape) from None
    if "@" in parts.netloc:  # do not echo it: the part before the @ may hold a token
        raise ConfigurationError(
            "the VSA base URL must not contain credentials: use the login and password fields"
        )
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(shape)
    try:
        port = parts.port  # urllib checks the port when it is read
    except ValueError:
        port = 0
    if port == 0:
        raise ConfigurationError(f"{shape}: its port is not a number from 1 to 65535")
    if not _HOST_NAME.fullmatch(parts.hostname or "") and not _is_ip_address(parts.hostname):
        # requests would report it as VSA failing, and a task would retry it
        raise ConfigurationError(f"{shape}: {parts.hostname!r} is not a host name")
    if parts.scheme == "http" and not allow_plain_http and not _on_this_machine(parts.hostname):
        raise ConfigurationError(
            f"VSA base URL {url} is plain HTTP: the personal access token would cross the network "
            "unencrypted; use https:// (plain HTTP is taken on this machine only, 127.0.0.1 or localhost, "
            "as for the simulator, or with the connection extra allow_plain_http=true)"
        )
    return url


#: Labels of letters (an internationalised name too), digits, "_" and inner "-", split by dots.
_HOST_NAME = re.compile(r"(?=.{1,253}$)\w([\w-]{0,61}\w)?(\.\w([\w-]{0,61}\w)?)*\.?")


def _is_ip_address(host: str | None) -> bool:
    try:
        ipaddress.ip_address(host or "")
    except ValueError:
        return False
    return True


def _on_this_machine(host: str | None) -> bool:
    """A loopback address: what is sent there never leaves the machine."""
    if not host:
        return False
    try:
        return host.lower() == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # another name
        return False


def _base_url_from_connection(conn: ConnectionInfo) -> str:
    host = conn.host.strip()
    if "://" not in host:
        scheme = conn.conn_type if conn.conn_type in ("http", "https") else "https"
        return f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
    try:
        parts = urlsplit(host)
        if conn.port and parts.port is None:
            parts = parts._replace(netloc=f"{parts.netloc}:{conn.port}")
    except ValueError:  # an unclosed IPv6 bracket, a port out of range: the client names it
        return host
    return parts.geturl()


def _options_from_extra(conn_id: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    """Typed client options from connection extras (URI-form extras arrive as strings). An
    unknown extra (a misspelt ``max_concurency`` would be ignored) or a value out of its range
    is refused, naming the connection and the extra."""
    known = [*_NUMBER_OPTIONS, *_BOOL_OPTIONS]
    for name in extra:
        if name not in known:
            close = get_close_matches(str(name), known, 1, 0.6)
            raise ConfigurationError(
                f"connection {conn_id!r}: extra {name!r} is not an option of the VSA client"
                + (f" (did you mean {close[0]}?)" if close else f" (options: {', '.join(known)})")
            )
    options: dict[str, Any] = {}
    for name, (kind, low, high) in _NUMBER_OPTIONS.items():
        value = extra.get(name)
        if value in (None, ""):
            continue
        try:
            options[name] = kind(value)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"connection {conn_id!r}: extra {name}={value!r} is not a number"
            ) from None
        if options[name] < low or (high is not None and options[name] > high) or options[name] != options[name]:
            span = f"at least {low:g}" if high is None else f"from {low:g} to {high:g}"
            raise ConfigurationError(
                f"connection {conn_id!r}: extra {name}={value!r} is out of range ({span}"
                + (" seconds)" if kind is float else ")")
            )
    for name, default in _BOOL_OPTIONS.items():
        if name in extra:
            options[name] = as_bool(extra[name], default, f"connection {conn_id!r}: extra {name}")
    return options


def _error_text(response: _Answer, without_secrets: Callable[[str], str]) -> str:
    """The ``Error`` text of a JSON error body, if any (never an HTML page), its credentials
    hidden before it is cut short (a cut through one would leave a prefix nothing matches)."""
    try:
        error = parse_envelope(response.content.decode("utf-8-sig")).get("Error")
    except ValueError:
        return ""
    return without_secrets(str(error))[:300] if error not in (None, "", "None") else ""


def _retry_after(response: _Answer) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return float(Retry(0).parse_retry_after(value))
    except InvalidHeader:
        return None


def _succeeded(code: object) -> bool:
    """Whether an envelope ``ResponseCode`` means success: 0, or 200-299 as VSA's own module
    decoder reads it (reference §2); the string and the number alike."""
    text = str(code).strip()
    return text == "0" or (text.isdigit() and 200 <= int(text) <= 299)


def _server_side(code: object) -> bool:
    """Whether an envelope ``ResponseCode`` reads as throttling or a server fault (retryable)."""
    try:
        number = int(str(code).strip())
    except ValueError:
        return False
    return number == 429 or number >= 500


def _reason(exc: BaseException) -> str:
    """The innermost cause of a requests/urllib3 error, without object reprs."""
    reason: object = exc
    while True:
        inner = getattr(reason, "reason", None) or (
            reason.args[0] if isinstance(reason, Exception) and reason.args else None
        )
        if not isinstance(inner, BaseException) or inner is reason:
            break
        reason = inner
    text = str(reason)
    return text.split(">: ", 1)[-1] if text.startswith("<") else text
