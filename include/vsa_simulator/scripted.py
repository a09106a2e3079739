"""A scripted VSA world for exact tests: every org, group, view and agent history spelled out."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from vsa_simulator.model import (
    AgentTable,
    World,
    WorldState,
    group_table,
    org_table,
    view_table,
)
from vsa_simulator.shapes import (
    AGENT_GETTERS,
    OS_PROFILES,
    AgentFacts,
    MachineGroup,
    Org,
    OsProfile,
    View,
    mix,
    snapshot_time,
)

ONLINE_CODES = frozenset({0, 1, 2, 11, 12, 198, 199})


class ScenarioError(ValueError):
    """A scenario spec that cannot describe a VSA world; the message says where."""


@dataclass(frozen=True)
class Span:
    """From ``start`` on (until the next span) the agent is in ``group`` (None = deleted)."""

    start: date
    group: MachineGroup | None
    online: int
    views: frozenset[str]


@dataclass(frozen=True)
class ScriptedAgent:
    agent_id: str
    machine: str
    os: OsProfile
    spans: tuple[Span, ...]
    last_seen: date | None = None  # stops checking in after this date

    def span_on(self, day: date) -> Span | None:
        """The span in force on ``day`` if the agent exists then."""
        current = None
        for span in self.spans:
            if span.start > day:
                break
            current = span
        return current if current is not None and current.group is not None else None

    @property
    def first_seen(self) -> date | None:
        return next((s.start for s in self.spans if s.group is not None and s.online != 199), None)


class ScriptedScenario(World):
    """A world given explicitly, so a test knows the exact state of every date.

    Build it with :meth:`from_dict` (or :meth:`from_file`, YAML or JSON)::

        start: 2024-03-01                 # the date served first (default: earliest span)
        orgs:
          - {id: "73511820644390182275501461", ref: contoso, name: Contoso Ltd}
          - {id: "73511820644390182275501470", ref: tailspin, name: Tailspin,
             parent: "73511820644390182275501461"}        # parent org: optional
        groups:                           # name: the group's own segment, no dots;
          - {id: "73511820644390182275501462", org: "73511820644390182275501461", name: root}
          - {id: "73511820644390182275501477", org: "73511820644390182275501461",
             name: servers, parent: "73511820644390182275501462"}   # -> contoso.root.servers
        views:
          - {id: "55120913", name: "Billable - Servers"}
        agents:
          - id: "902117643350088"
            name: sql01                   # machine name -> AgentName sql01.servers.root.contoso
            os: win2019                   # optional: win2019 win2022 win2016 linux win10 win11 macos
            last_seen: 2024-03-15         # optional: LastCheckInTime freezes after this date
            spans:                        # [from, group id or null = deleted, Online (11), [view ids]]
              - [2024-03-01, "73511820644390182275501477", 1, ["55120913"]]
              - [2024-03-10, "73511820644390182275501462"]          # moved, left the view
              - [2024-03-20, null]                                  # deleted

    An agent is absent before its first span. Online 199 gives null check-in times. Ids
    are decimal strings (quote them in YAML; unquoted integers are accepted exactly).
    """

    def __init__(
        self,
        orgs: Iterable[Org],
        groups: Iterable[MachineGroup],
        views: Iterable[View],
        agents: Iterable[ScriptedAgent],
        start: date | None = None,
    ) -> None:
        super().__init__()
        self.orgs, self.groups, self.views = list(orgs), list(groups), list(views)
        self.agents = list(agents)
        self._by_id = {a.agent_id: h for h, a in enumerate(self.agents)}
        if len(self._by_id) != len(self.agents):
            raise ScenarioError("scenario: duplicate agent id")
        starts = [a.spans[0].start for a in self.agents if a.spans]
        if start is None and not starts:
            raise ScenarioError("scenario: give a start date when there are no agents")
        self._start = start or min(starts)
        self._tables = (org_table(self.orgs), group_table(self.groups), view_table(self.views))

    @property
    def default_date(self) -> date:
        return self._start

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> ScriptedScenario:
        """Build from the spec format above (already parsed YAML/JSON)."""
        return _SpecReader(spec).scenario()

    @classmethod
    def from_file(cls, path: str | Path) -> ScriptedScenario:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ScenarioError(f"scenario file {path}: {exc.strerror}") from None
        if path.suffix.lower() == ".json":
            spec = json.loads(text)
        else:
            import yaml

            spec = yaml.safe_load(text)
        if not isinstance(spec, Mapping):
            raise ScenarioError(f"scenario file {path}: expected a mapping at the top")
        return cls.from_dict(spec)

    def _build_state(self, day: date) -> WorldState:
        live = {h: span for h, agent in enumerate(self.agents) if (span := agent.span_on(day))}
        facts = _Facts(self, day, live)
        name = AGENT_GETTERS["AgentName"]
        order = sorted(live, key=lambda h: (name(facts, h).casefold(), name(facts, h)))
        filters: dict[str, Callable[[int], bool]] = {
            v.view_id: (lambda h, v=v.view_id: v in live[h].views) for v in self.views
        }
        orgs, groups, views = self._tables
        return WorldState(day, orgs, groups, views, AgentTable(facts, order, complete=True), filters)


class _Facts(AgentFacts):
    def __init__(self, world: ScriptedScenario, day: date, live: dict[int, Span]) -> None:
        self._agents, self._by_id, self._live = world.agents, world._by_id, live
        self._day, self._now = day, snapshot_time(day)

    def agent_id(self, h: int) -> str:
        return self._agents[h].agent_id

    def machine(self, h: int) -> str:
        return self._agents[h].machine

    def group(self, h: int) -> MachineGroup:
        return self._live[h].group  # type: ignore[return-value]  # live spans have a group

    def online(self, h: int) -> int:
        return self._live[h].online

    def os(self, h: int) -> OsProfile:
        return self._agents[h].os

    def noise(self, h: int) -> int:
        return mix(int(self._agents[h].agent_id))

    def first_checkin(self, h: int) -> datetime | None:
        first = self._agents[h].first_seen
        if first is None or self.online(h) == 199:
            return None
        return datetime.combine(first, time(0, 0)) + timedelta(milliseconds=self.noise(h) % 600_000)

    def last_checkin(self, h: int) -> datetime | None:
        first = self.first_checkin(h)
        if first is None:
            return None
        last_seen = self._agents[h].last_seen
        daily = mix(self.noise(h), self._day.toordinal())
        if last_seen is not None and self._day > last_seen:
            seen = snapshot_time(last_seen) - timedelta(milliseconds=daily % 600_000)
        elif self.online(h) == 0:
            seen = self._now - timedelta(milliseconds=3_600_000 + daily % 259_200_000)
        else:
            seen = self._now - timedelta(milliseconds=60_000 + daily % 3_000_000)
        return max(first, seen)

    def find(self, agent_id: str) -> int | None:
        h = self._by_id.get(agent_id)
        return h if h is not None and h in self._live else None


class _SpecReader:
    """Validates a spec, with messages that point at the offending entry."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = spec
        _only_keys("scenario", spec, {"start", "orgs", "groups", "views", "agents"})

    def scenario(self) -> ScriptedScenario:
        start = self.spec.get("start")
        orgs = self._orgs()
        groups = self._groups({o.org_id: o for o in orgs})
        views = self._views()
        agents = [self._agent(i, a, groups, views) for i, a in enumerate(self._list("agents"))]
        return ScriptedScenario(
            orgs, groups.values(), [View(k, n) for k, n in views.items()], agents,
            _date(start, "start") if start is not None else None,
        )

    def _list(self, key: str) -> list[Mapping[str, Any]]:
        items = self.spec.get(key) or []
        if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
            raise ScenarioError(f"scenario {key}: expected a list of mappings")
        return items

    @staticmethod
    def _id(item: Mapping[str, Any], key: str, where: str, digits: int | None = None) -> str:
        value = item.get(key)
        text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
        if not text.isdigit() or text.startswith("0") or len(text) > 26 or (digits and len(text) != digits):
            size = f"{digits} digits" if digits else "up to 26 digits"
            raise ScenarioError(f"scenario {where}.{key}: expected a decimal id ({size}), got {value!r}")
        return text

    def _views(self) -> dict[str, str]:
        views: dict[str, str] = {}
        for i, v in enumerate(self._list("views")):
            where = f"views[{i}]"
            _only_keys(where, v, {"id", "name"})
            if not v.get("name"):
                raise ScenarioError(f"scenario {where}.name: required")
            views[self._id(v, "id", where)] = str(v["name"])
        return views

    def _orgs(self) -> list[Org]:
        orgs: list[Org] = []
        for i, o in enumerate(self._list("orgs")):
            where = f"orgs[{i}]"
            _only_keys(where, o, {"id", "ref", "name", "parent"})
            ref = str(o.get("ref") or "")
            if not ref or "." in ref:
                raise ScenarioError(f"scenario {where}.ref: a non-empty name without dots is required")
            parent = self._id(o, "parent", where) if o.get("parent") is not None else None
            orgs.append(Org(self._id(o, "id", where), ref, str(o.get("name") or ref), parent))
        ids = {o.org_id for o in orgs}
        for o in orgs:
            if o.parent_id is not None and o.parent_id not in ids:
                raise ScenarioError(f"scenario org {o.ref}: unknown parent {o.parent_id}")
        return orgs

    def _groups(self, orgs: Mapping[str, Org]) -> dict[str, MachineGroup]:
        raw: dict[str, tuple[str, str, str | None, str]] = {}
        for i, g in enumerate(self._list("groups")):
            where = f"groups[{i}]"
            _only_keys(where, g, {"id", "org", "name", "parent"})
            name = str(g.get("name") or "")
            if not name or "." in name:
                raise ScenarioError(f"scenario {where}.name: the group's own name, without dots")
            org = self._id(g, "org", where)
            if org not in orgs:
                raise ScenarioError(f"scenario {where}.org: unknown org {org}")
            parent = self._id(g, "parent", where) if g.get("parent") is not None else None
            raw[self._id(g, "id", where)] = (name, org, parent, where)
        groups: dict[str, MachineGroup] = {}

        def build(group_id: str, seen: tuple[str, ...] = ()) -> MachineGroup:
            if group_id in groups:
                return groups[group_id]
            name, org, parent, where = raw[group_id]
            if parent is None:
                full = f"{orgs[org].ref}.{name}"
            elif parent not in raw or parent in seen:
                raise ScenarioError(f"scenario {where}.parent: unknown or cyclic parent {parent}")
            elif raw[parent][1] != org:
                raise ScenarioError(f"scenario {where}.parent: parent {parent} is in another org")
            else:
                full = f"{build(parent, (*seen, group_id)).name}.{name}"
            groups[group_id] = MachineGroup(group_id, full, parent, org)
            return groups[group_id]

        for group_id in raw:
            build(group_id)
        return groups

    def _agent(
        self, i: int, a: Mapping[str, Any], groups: Mapping[str, MachineGroup], views: Mapping[str, str]
    ) -> ScriptedAgent:
        where = f"agents[{i}]"
        _only_keys(where, a, {"id", "name", "os", "last_seen", "spans"})
        machine = str(a.get("name") or "")
        if not machine or "." in machine:
            raise ScenarioError(f"scenario {where}.name: a machine name without dots is required")
        os_key = str(a.get("os", "win11"))
        if os_key not in OS_PROFILES:
            raise ScenarioError(f"scenario {where}.os: one of {', '.join(OS_PROFILES)}")
        spans: list[Span] = []
        for j, raw in enumerate(a.get("spans") or []):
            spans.append(self._span(f"{where}.spans[{j}]", raw, groups, views))
            if len(spans) > 1 and spans[-1].start <= spans[-2].start:
                raise ScenarioError(f"scenario {where}.spans[{j}]: dates must increase")
        if not spans:
            raise ScenarioError(f"scenario {where}.spans: at least one span is required")
        last_seen = a.get("last_seen")
        return ScriptedAgent(
            self._id(a, "id", where, digits=15), machine, OS_PROFILES[os_key], tuple(spans),
            _date(last_seen, f"{where}.last_seen") if last_seen is not None else None,
        )

    def _span(self, where: str, raw: Any, groups: Mapping[str, MachineGroup], views: Mapping[str, str]) -> Span:
        if not isinstance(raw, list | tuple) or not 2 <= len(raw) <= 4:
            raise ScenarioError(f"scenario {where}: expected [from, group id or null, online, [view ids]]")
        start, group_id, online, view_ids = (*raw, *(None, None, 11, [])[len(raw):])
        group = None
        if group_id is not None:
            key = self._id({"group": group_id}, "group", where)
            if key not in groups:
                raise ScenarioError(f"scenario {where}: unknown group {key}")
            group = groups[key]
        if online not in ONLINE_CODES or isinstance(online, bool):
            raise ScenarioError(f"scenario {where}: Online must be one of {sorted(ONLINE_CODES)}")
        members = frozenset(self._id({"view": v}, "view", where) for v in view_ids)
        if not members <= views.keys():
            raise ScenarioError(f"scenario {where}: unknown view {sorted(members - views.keys())}")
        return Span(_date(start, where), group, online, members)


def _only_keys(where: str, item: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = set(item) - allowed
    if unknown:
        raise ScenarioError(f"scenario {where}: unknown keys {sorted(map(str, unknown))}")


def _date(value: Any, where: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ScenarioError(f"scenario {where}: expected a date YYYY-MM-DD, got {value!r}") from None
