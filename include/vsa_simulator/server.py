"""The VSA simulator's HTTP server: the VSA REST API shapes over a :class:`World`, with faults.

API, under ``/api/v1.0`` (paths case-insensitive, GET only):

- ``/auth`` with ``Authorization: Basic base64(user:token)`` → a session (``Token`` and
  ``ApiToken``, both accepted as ``Bearer`` on every other endpoint); bad credentials → 401.
- ``/system/orgs``, ``/system/orgs/{id}``, ``/system/orgs/{id}/machinegroups``,
  ``/system/machinegroups``, ``/system/machinegroups/{id}``, ``/system/views``,
  ``/assetmgmt/agents``, ``/assetmgmt/agents/{id}``, ``/assetmgmt/agentsinview/{viewId}``.
- Collections take ``$filter``, ``$orderby``, ``$skip``, ``$top`` and answer at most 100
  records per request; single records have no ``TotalRecords``.

Control endpoints (no auth; JSON): ``GET /_sim/state`` (date, counts, faults, request
counts), ``POST /_sim/date`` ``{"date": "YYYY-MM-DD"}``, ``POST /_sim/faults`` (a full
:class:`FaultConfig` as JSON; omitted fields take their defaults), ``POST
/_sim/sessions/expire`` (every session token dies, as when VSA kills sessions).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import socket
import struct
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from vsa_simulator.faults import Fault, FaultConfig, FaultInjector
from vsa_simulator.model import (
    AgentTable,
    OverlayTable,
    Table,
    World,
    WorldState,
    id_key,
)
from vsa_simulator.odata import ODataError
from vsa_simulator.query import select
from vsa_simulator.sessions import SessionStore, basic_credentials_match
from vsa_simulator.shapes import ID_FIELDS, iso_utc, snapshot_time

API_PREFIX = "/api/v1.0"
DEMO_USER = "billing.integrator"
# The simulator's own demo personal access token: a fixed, public value, not a secret.
DEMO_TOKEN = "5f0c7a1e-8d2b-4c3a-9e61-2b7d4a9c0f13"
MAX_PAGE = 100
_CACHE_SIZE = 32
_LOG_SIZE = 10_000

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RequestRecord:
    """One API request as the simulator saw it (no headers: tokens are never kept)."""

    method: str
    path: str  # lower-cased, without the query string
    query: Mapping[str, str]
    status: int  # 0: the connection was dropped without an answer (the "reset" fault)
    response_code: int | None  # the envelope's ResponseCode, when a JSON envelope was sent


@dataclass
class _Reply:
    status: int
    payload: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # a body sent as is (the "malformed" fault)
    reset: bool = False  # drop the connection without answering


def _ok(result: Any, total: int | None = None) -> dict[str, Any]:
    head = {} if total is None else {"TotalRecords": total}
    return {**head, "Result": result, "ResponseCode": 0, "Status": "OK", "Error": "None"}


def _error(code: int, message: str) -> dict[str, Any]:
    return {"Result": None, "ResponseCode": code, "Status": "Error", "Error": message}


class SimulatorServer:
    """A real HTTP server speaking the VSA REST API over ``world`` on a simulated date.

    ``start()`` serves from a background thread (``port=0`` picks a free port; see
    ``base_url``); it is also a context manager. ``ids_as_numbers`` renders decimal ids as
    JSON numbers (exact digits) instead of strings. Sessions last ``session_minutes`` of
    real time; ``SessionExpiration`` is server-local time, ``offset_minutes`` behind UTC.
    ``request_log``, ``count()``, ``auth_calls`` let tests assert what a client did.
    """

    def __init__(
        self,
        world: World,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        user: str = DEMO_USER,
        token: str = DEMO_TOKEN,
        faults: FaultConfig | None = None,
        date: dt.date | None = None,
        ids_as_numbers: bool = False,
        session_minutes: int = 30,
        offset_minutes: int = 0,
    ) -> None:
        self.world = world
        self.user, self.token = user, token
        self.ids_as_numbers = ids_as_numbers
        self._host, self._port = host, port
        self._date = date or world.default_date
        self._faults = FaultInjector(faults or FaultConfig())
        self._lock = threading.RLock()
        self._sessions = SessionStore(session_minutes, offset_minutes)
        self._extras: list[dict[str, Any]] = []
        self._hidden_orgs: frozenset[str] = frozenset()  # their agents are not reported (set_hidden_orgs)
        self._hidden_state: WorldState | None = None
        self._cache: OrderedDict[tuple[Any, ...], Sequence[int]] = OrderedDict()
        self._query_lock = threading.Lock()
        self._log: deque[RequestRecord] = deque(maxlen=_LOG_SIZE)
        self._counts: Counter[str] = Counter()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._routes: list[tuple[re.Pattern[str], Callable[..., _Reply]]] = [
            (re.compile(p), fn)
            for p, fn in (
                (r"/system/orgs", self._orgs),
                (r"/system/orgs/(\d+)", self._org),
                (r"/system/orgs/(\d+)/machinegroups", self._org_groups),
                (r"/system/machinegroups", self._groups),
                (r"/system/machinegroups/(\d+)", self._group),
                (r"/system/views", self._views),
                (r"/assetmgmt/agents", self._agents),
                (r"/assetmgmt/agents/(\d+)", self._agent),
                (r"/assetmgmt/agentsinview/(\d+)", self._view_agents),
            )
        ]

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> SimulatorServer:
        if self._httpd is None:
            self._httpd = _HTTPServer((self._host, self._port), self)
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                name=f"vsa-sim-{self.port}", daemon=True,
            )
            self._thread.start()
            logger.info("VSA simulator serving %s (date %s)", self.base_url, self.date)
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()  # keep-alive clients must not reach a stopped server
        httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the simulator is not running")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """The VSA base URL (the API lives under ``/api/v1.0``)."""
        return f"http://{self._host}:{self.port}"

    def connection_json(self) -> str:
        """The ``AIRFLOW_CONN_VSA_DEFAULT`` value (JSON form) for a client of this server."""
        connection = {"conn_type": "http", "host": self.base_url, "login": self.user, "password": self.token}
        if self._host not in ("127.0.0.1", "localhost", "::1"):  # the client takes plain HTTP elsewhere only so
            connection["extra"] = {"allow_plain_http": True}
        return json.dumps(connection)

    # -- simulated world and faults ------------------------------------------------------

    @property
    def date(self) -> dt.date:
        return self._date

    def set_date(self, day: dt.date | str) -> None:
        """Serve another date; agents inserted by faults and cached queries are dropped."""
        if isinstance(day, str):
            day = dt.date.fromisoformat(day)
        with self._lock:
            self._date = day
            self._extras = []
            self._hidden_state = None
            self._faults.new_day()
        with self._query_lock:
            self._cache.clear()

    @property
    def hidden_orgs(self) -> frozenset[str]:
        return self._hidden_orgs

    def set_hidden_orgs(self, orgs: Sequence[str]) -> None:
        """Stop reporting the agents of ``orgs`` (OrgId or OrgRef), from the date served now on
        until changed (``[]``: report every agent again): a customer's agents vanishing from VSA,
        as a sync quarantines it. The orgs themselves, their groups and views stay."""
        hidden = self.world.state(self._date).org_ids(list(orgs))
        with self._lock:
            self._hidden_orgs, self._hidden_state = hidden, None
        with self._query_lock:
            self._cache.clear()

    @property
    def faults(self) -> FaultConfig:
        return self._faults.config

    def set_faults(self, config: FaultConfig) -> None:
        """Replace the fault settings; the fault RNG restarts from ``config.seed``."""
        self._faults = FaultInjector(config)

    def expire_sessions(self) -> None:
        self._sessions.expire_all()

    def state(self) -> WorldState:
        state = self.world.state(self._date)
        if not self._hidden_orgs:
            return state
        with self._lock:
            if self._hidden_state is None or self._hidden_state.date != state.date:
                self._hidden_state = state.without_orgs(self._hidden_orgs)
            return self._hidden_state

    def status(self) -> dict[str, Any]:
        """What ``GET /_sim/state`` answers."""
        state = self.state()
        with self._lock:
            return {
                "date": state.date.isoformat(),
                **state.counts(),
                "inserted_agents": len(self._extras),
                "hidden_orgs": sorted(self._hidden_orgs),
                "api_requests": sum(self._counts.values()),
                "auth_calls": self.auth_calls,
                "faults": self.faults.to_dict(),
                "fail_next_pending": self._faults.pending(),
            }

    # -- what clients did ----------------------------------------------------------------

    @property
    def request_log(self) -> list[RequestRecord]:
        """The last 10,000 API requests, oldest first."""
        with self._lock:
            return list(self._log)

    @property
    def path_counts(self) -> Counter[str]:
        """API requests per lower-cased path."""
        with self._lock:
            return Counter(self._counts)

    def count(self, path_prefix: str = "") -> int:
        """API requests whose path starts with ``path_prefix`` (case-insensitive), e.g.
        ``count("/api/v1.0/assetmgmt/agents")``; ``count()`` is every API request."""
        prefix = path_prefix.lower()
        with self._lock:
            return sum(n for path, n in self._counts.items() if path.startswith(prefix))

    @property
    def auth_calls(self) -> int:
        with self._lock:
            return self._counts[f"{API_PREFIX}/auth"]

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()
            self._counts.clear()

    # -- request handling ----------------------------------------------------------------

    def _dispatch(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        """Answer one HTTP request (called from the server's handler threads)."""
        url = urlsplit(target)
        path = "/" + url.path.strip("/").lower()
        query = {k.lower(): v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        if path.startswith("/_sim/"):
            return self._control(method, path, body)
        if path != API_PREFIX and not path.startswith(API_PREFIX + "/"):
            return _Reply(404, _error(404, f"No resource matches '{url.path}'."))
        config = self.faults
        if config.latency_ms:
            time.sleep(config.latency_ms / 1000)
        fault = self._faults.draw(path)
        if fault is not None and fault.kind != "malformed":
            reply = self._fault_reply(fault, config)
        else:
            reply = self._api(method, path[len(API_PREFIX):], query, headers)
            if fault is not None and reply.status == 200:  # the "malformed" fault
                text = json.dumps(reply.payload).encode()
                reply = _Reply(200, raw=text[: max(1, len(text) // 2)])
        self._record(method, path, query, reply)
        logger.debug("%s %s -> %s%s", method, target, "reset" if reply.reset else reply.status,
                      f" (injected {fault.kind})" if fault else "")
        return reply

    def _fault_reply(self, fault: Fault, config: FaultConfig) -> _Reply:
        if fault.kind == "reset":
            return _Reply(0, reset=True)
        if fault.kind == "error_in_200":
            return _Reply(200, _error(500, "An unexpected error occurred while processing the request."))
        headers = {"Retry-After": str(config.retry_after)} if fault.status == 429 else {}
        texts = {401: "Authorization has been denied for this request.",
                 429: "Too many requests. Retry later."}
        text = texts.get(fault.status) or HTTPStatus(fault.status).phrase
        return _Reply(fault.status, _error(fault.status, text), headers)

    def _record(self, method: str, path: str, query: Mapping[str, str], reply: _Reply) -> None:
        code = reply.payload.get("ResponseCode") if isinstance(reply.payload, dict) and reply.raw is None else None
        with self._lock:
            self._log.append(RequestRecord(method, path, dict(query), reply.status, code))
            self._counts[path] += 1

    def _api(self, method: str, route: str, query: Mapping[str, str], headers: Mapping[str, str]) -> _Reply:
        if method != "GET":
            return _Reply(405, _error(405, f"The requested resource does not support http method '{method}'."))
        if route == "/auth":
            return self._auth(headers)
        if not self._sessions.check(headers.get("Authorization") or "", self.faults.session_expires_after):
            return _Reply(401, _error(401, "Authorization has been denied for this request."),
                          {"WWW-Authenticate": "Bearer"})
        state = self.state()
        for pattern, answer in self._routes:
            match = pattern.fullmatch(route)
            if match:
                return answer(state, route, query, *match.groups())
        return _Reply(404, _error(404, f"No HTTP resource was found that matches the request URI '{API_PREFIX}{route}'."))

    # -- auth ----------------------------------------------------------------------------

    def _auth(self, headers: Mapping[str, str]) -> _Reply:
        if not basic_credentials_match(headers.get("Authorization") or "", self.user, self.token):
            return _Reply(401, _error(401, "Invalid credentials: unknown user name or personal access token."))
        return _Reply(200, _ok(self._sessions.open(self.user)))

    # -- collections ---------------------------------------------------------------------

    def _collection(self, route: str, table: Table, query: Mapping[str, str]) -> _Reply:
        try:
            skip = _int_option(query, "$skip", 0)
            top = min(_int_option(query, "$top", MAX_PAGE), MAX_PAGE)
            rows = self._select(route, table, query.get("$filter", ""), query.get("$orderby", ""))
        except ODataError as exc:
            return _Reply(exc.http_status, _error(400, exc.message))
        page = [self._render(table.record(h)) for h in rows[skip: skip + top]]
        return _Reply(200, _ok(page, total=len(rows)))

    def _select(self, route: str, table: Table, filter_text: str, orderby: str) -> Sequence[int]:
        """Query results are cached: clients page through the same query a hundred at a time."""
        key = (self._date, len(self._extras), self._hidden_orgs, route, filter_text, orderby)
        with self._query_lock:
            rows = self._cache.get(key)
            if rows is None:
                rows = self._cache[key] = select(table, filter_text, orderby)
                if len(self._cache) > _CACHE_SIZE:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(key)
        return rows

    def _single(self, table: Table, key: str, entity: str) -> _Reply:
        h = table.find(key)
        if h is None:
            return _Reply(404, _error(404, f"{entity} with id {key} was not found."))
        return _Reply(200, _ok(self._render(table.record(h))))

    def _render(self, record: dict[str, Any]) -> dict[str, Any]:
        if not self.ids_as_numbers:
            return record
        return {k: int(v) if k in ID_FIELDS and isinstance(v, str) else v for k, v in record.items()}

    def _agent_table(self, state: WorldState) -> AgentTable | OverlayTable:
        with self._lock:
            return OverlayTable(state.agents, self._extras) if self._extras else state.agents

    def _orgs(self, state: WorldState, route: str, query: Mapping[str, str]) -> _Reply:
        return self._collection(route, state.orgs, query)

    def _org(self, state: WorldState, route: str, query: Mapping[str, str], org_id: str) -> _Reply:
        return self._single(state.orgs, org_id, "Organization")

    def _org_groups(self, state: WorldState, route: str, query: Mapping[str, str], org_id: str) -> _Reply:
        if state.orgs.find(org_id) is None:
            return _Reply(404, _error(404, f"Organization with id {org_id} was not found."))
        groups = state.groups.subset(state.groups.lookup("OrgId", id_key(org_id) or "") or [])
        return self._collection(route, groups, query)

    def _groups(self, state: WorldState, route: str, query: Mapping[str, str]) -> _Reply:
        return self._collection(route, state.groups, query)

    def _group(self, state: WorldState, route: str, query: Mapping[str, str], group_id: str) -> _Reply:
        return self._single(state.groups, group_id, "Machine group")

    def _views(self, state: WorldState, route: str, query: Mapping[str, str]) -> _Reply:
        return self._collection(route, state.views, query)

    def _agents(self, state: WorldState, route: str, query: Mapping[str, str]) -> _Reply:
        reply = self._collection(route, self._agent_table(state), query)
        if reply.payload["ResponseCode"] == 0 and self._faults.page_served(_int_option(query, "$skip", 0)):
            self._insert_agent(state)
        return reply

    def _agent(self, state: WorldState, route: str, query: Mapping[str, str], agent_id: str) -> _Reply:
        return self._single(self._agent_table(state), agent_id, "Agent")

    def _view_agents(self, state: WorldState, route: str, query: Mapping[str, str], view_id: str) -> _Reply:
        members = state.view_members(view_id)
        if members is None:
            return _Reply(404, _error(404, f"View with id {view_id} was not found."))
        return self._collection(route, members, query)

    def _insert_agent(self, state: WorldState) -> None:
        """The insert-during-paging fault: a new agent sorts before every other one."""
        if not len(state.agents):
            return
        with self._lock:
            table = self._agent_table(state)
            template = state.agents.record(state.agents.handles[0])
            number = len(self._extras) + 1
            agent_id = 999_999_999_999_999 - number
            while table.find(str(agent_id)) is not None:
                agent_id -= 1
            machine = f"000-late-{number:04d}"
            stamp = iso_utc(snapshot_time(self._date) - dt.timedelta(minutes=5))
            self._extras.append({
                **template, "AgentId": str(agent_id), "AgentName": f"{machine}.{template['MachineGroup']}",
                "ComputerName": machine.upper(), "Online": 11, "LastCheckInTime": stamp,
                "FirstCheckIn": stamp, "LastRebootTime": stamp,
            })
        logger.debug("inserted agent %s at the front of the AgentName order", agent_id)

    # -- control endpoints ---------------------------------------------------------------

    def _control(self, method: str, path: str, body: bytes) -> _Reply:
        try:
            if (method, path) == ("GET", "/_sim/state"):
                return _Reply(200, self.status())
            if (method, path) == ("POST", "/_sim/date"):
                self.set_date(str(_json_body(body)["date"]))
                return _Reply(200, self.status())
            if (method, path) == ("POST", "/_sim/faults"):
                self.set_faults(FaultConfig.from_dict(_json_body(body)))
                return _Reply(200, self.status())
            if (method, path) == ("POST", "/_sim/hidden-orgs"):
                orgs = _json_body(body)["orgs"]
                if not isinstance(orgs, list) or not all(isinstance(o, str) for o in orgs):
                    raise TypeError('"orgs" must be a list of OrgId or OrgRef strings')
                self.set_hidden_orgs(orgs)
                return _Reply(200, self.status())
            if (method, path) == ("POST", "/_sim/sessions/expire"):
                self.expire_sessions()
                return _Reply(200, self.status())
        except (KeyError, TypeError, ValueError) as exc:
            return _Reply(400, {"error": f"{type(exc).__name__}: {exc}"})
        return _Reply(404, {"error": f"unknown control endpoint {method} {path}"})


def _int_option(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.strip().isdigit():
        raise ODataError(f"Invalid value '{raw}' for the query option {name}.")
    return int(raw)


def _json_body(body: bytes) -> Any:
    return json.loads(body.decode("utf-8") or "null")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients' connection pools expect
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""
    timeout = 60  # idle keep-alive connections close eventually
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        try:
            reply = self.server.sim._dispatch(self.command, self.path, self.headers, body)
        except Exception:  # a simulator bug must still answer, as a server error
            logger.exception("VSA simulator failed on %s %s", self.command, self.path)
            reply = _Reply(500, _error(500, "Internal simulator error."))
        if reply.reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        payload = reply.raw if reply.raw is not None else json.dumps(reply.payload, separators=(",", ":")).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base signature
        """Silence the stderr access log: ``SimulatorServer._dispatch`` logs each request at DEBUG."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], sim: SimulatorServer) -> None:
        self.sim = sim
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            (self._connections.add if add else self._connections.discard)(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            for connection in self._connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
