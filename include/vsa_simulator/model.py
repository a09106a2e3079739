"""The world model's common core: tables of records, the state of one date, and ``World``.

Every collection the server pages through is a :class:`Table`: rows addressed by int handles
in the collection's natural order. Agent tables hold only handles and render records on
demand, so a million-agent state costs a few megabytes and a page costs a hundred renders.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date
from functools import partial
from itertools import chain
from typing import Any

from vsa_simulator.shapes import (
    AGENT_GETTERS,
    AGENT_SCHEMA,
    GROUP_SCHEMA,
    ORG_SCHEMA,
    VIEW_SCHEMA,
    AgentFacts,
    MachineGroup,
    Org,
    Schema,
    View,
)

Getter = Callable[[int], Any]


def id_key(value: Any) -> str | None:
    """The canonical text of a decimal id (exact: no float, no int64), for index lookups."""
    if value is None:
        return None
    text = str(value)
    return str(int(text)) if text.isdigit() else text


class Table(ABC):
    """Rows addressed by int handles, in the collection's natural order."""

    schema: Schema
    presorted: str | None = None  # a field the natural order is ascending on

    @property
    @abstractmethod
    def handles(self) -> Sequence[int]: ...

    @abstractmethod
    def getter(self, field: str) -> Getter: ...

    @abstractmethod
    def record(self, h: int) -> dict[str, Any]: ...

    @abstractmethod
    def lookup(self, field: str, key: str) -> Sequence[int] | None:
        """Handles whose decimal ``field`` equals ``key`` (in order), or None if not indexed."""

    @abstractmethod
    def find(self, key: str) -> int | None:
        """The handle of the row with this id, else None."""


class RecordTable(Table):
    """A small collection (orgs, groups, views) held as ready records."""

    def __init__(self, schema: Schema, records: Sequence[dict[str, Any]], key_field: str) -> None:
        self.schema = schema
        self._records = list(records)
        self._key_field = key_field
        self._indexes: dict[str, dict[str | None, list[int]]] = {}

    @property
    def handles(self) -> Sequence[int]:
        return range(len(self._records))

    def getter(self, field: str) -> Getter:
        records = self._records
        return lambda h: records[h].get(field)

    def record(self, h: int) -> dict[str, Any]:
        return self._records[h]

    def lookup(self, field: str, key: str) -> Sequence[int] | None:
        index = self._indexes.get(field)
        if index is None:
            index = {}
            for h, rec in enumerate(self._records):
                index.setdefault(id_key(rec.get(field)), []).append(h)
            self._indexes[field] = index
        return index.get(key, [])

    def find(self, key: str) -> int | None:
        found = self.lookup(self._key_field, id_key(key) or "")
        return found[0] if found else None

    def subset(self, handles: Sequence[int]) -> RecordTable:
        return RecordTable(self.schema, [self._records[h] for h in handles], self._key_field)


class AgentTable(Table):
    """Agents of one date in AgentName order: handles plus the facts to render them."""

    schema = AGENT_SCHEMA
    presorted = "AgentName"
    _INDEXED = ("OrgId", "MachineGroupId")

    def __init__(self, facts: AgentFacts, handles: Sequence[int], *, complete: bool,
                 hidden_orgs: frozenset[str] = frozenset()) -> None:
        self.facts = facts
        self._handles = handles
        # every live agent of the date but those of hidden_orgs (so AgentId lookups are exact)
        self._complete = complete
        self._hidden_orgs = hidden_orgs
        self._indexes: dict[str, dict[str, list[int]]] = {}
        self._lock = threading.Lock()

    @property
    def handles(self) -> Sequence[int]:
        return self._handles

    def __len__(self) -> int:
        return len(self._handles)

    def getter(self, field: str) -> Getter:
        return partial(AGENT_GETTERS[field], self.facts)

    def record(self, h: int) -> dict[str, Any]:
        facts = self.facts
        return {name: get(facts, h) for name, get in AGENT_GETTERS.items()}

    def lookup(self, field: str, key: str) -> Sequence[int] | None:
        if field == "AgentId" and self._complete:
            h = self.facts.find(key)
            return [] if h is None or self.facts.group(h).org_id in self._hidden_orgs else [h]
        if field not in self._INDEXED:
            return None
        with self._lock:  # built once per date, on first use
            index = self._indexes.get(field)
            if index is None:
                index = self._indexes[field] = self._build_index(field)
        return index.get(key, [])

    def _build_index(self, field: str) -> dict[str, list[int]]:
        group = self.facts.group
        index: dict[str, list[int]] = {}
        for h in self._handles:
            g = group(h)
            index.setdefault(g.org_id if field == "OrgId" else g.group_id, []).append(h)
        return index

    def find(self, key: str) -> int | None:
        found = self.lookup("AgentId", key) if self._complete else None
        return found[0] if found else None

    def subset(self, handles: Sequence[int]) -> AgentTable:
        return AgentTable(self.facts, handles, complete=False)

    def without_orgs(self, orgs: frozenset[str]) -> AgentTable:
        """The same agents but those of ``orgs``, as VSA answers once they are gone."""
        group = self.facts.group
        return AgentTable(self.facts, [h for h in self._handles if group(h).org_id not in orgs],
                          complete=self._complete, hidden_orgs=self._hidden_orgs | orgs)


class _Chain(Sequence[int]):
    """Two sequences read as one, without copying the (possibly million-long) second one."""

    def __init__(self, front: Sequence[int], back: Sequence[int]) -> None:
        self._front, self._back = front, back

    def __len__(self) -> int:
        return len(self._front) + len(self._back)

    def __iter__(self) -> Iterator[int]:
        return chain(self._front, self._back)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        if i < 0:
            i += len(self)
        n = len(self._front)
        return self._front[i] if i < n else self._back[i - n]


class OverlayTable(Table):
    """Agents inserted mid-extraction (a fault) in front of a date's agents.

    Extra rows are ready records addressed by negative handles (-1 is the first).
    """

    schema = AGENT_SCHEMA
    presorted = "AgentName"

    def __init__(self, base: AgentTable, extras: Sequence[dict[str, Any]]) -> None:
        self._base = base
        self._extras = list(extras)
        self._handles = _Chain(range(-1, -len(self._extras) - 1, -1), base.handles)

    @property
    def handles(self) -> Sequence[int]:
        return self._handles

    def getter(self, field: str) -> Getter:
        base, extras = self._base.getter(field), self._extras
        return lambda h: extras[-h - 1].get(field) if h < 0 else base(h)

    def record(self, h: int) -> dict[str, Any]:
        return self._extras[-h - 1] if h < 0 else self._base.record(h)

    def lookup(self, field: str, key: str) -> Sequence[int] | None:
        found = self._base.lookup(field, key)
        if found is None:
            return None
        front = [-i - 1 for i, rec in enumerate(self._extras) if id_key(rec.get(field)) == key]
        return front + list(found)

    def find(self, key: str) -> int | None:
        found = self.lookup("AgentId", id_key(key) or "")
        return found[0] if found else None


class WorldState:
    """What VSA reports on one date: orgs, groups, views, agents and each view's members."""

    def __init__(
        self,
        day: date,
        orgs: RecordTable,
        groups: RecordTable,
        views: RecordTable,
        agents: AgentTable,
        view_filters: Mapping[str, Callable[[int], bool]],
    ) -> None:
        self.date = day
        self.orgs, self.groups, self.views, self.agents = orgs, groups, views, agents
        self._view_filters = view_filters
        self._members: dict[str, AgentTable] = {}
        self._lock = threading.Lock()

    def view_members(self, view_id: str) -> AgentTable | None:
        """A view's members in AgentName order (computed on first use), or None if unknown."""
        key = id_key(view_id) or ""
        keep = self._view_filters.get(key)
        if keep is None:
            return None
        with self._lock:
            table = self._members.get(key)
            if table is None:
                table = self._members[key] = self.agents.subset(
                    [h for h in self.agents.handles if keep(h)]
                )
        return table

    def without_orgs(self, orgs: frozenset[str]) -> WorldState:
        """This date as VSA reports it when the agents of ``orgs`` are gone (an outage drill)."""
        return WorldState(self.date, self.orgs, self.groups, self.views, self.agents.without_orgs(orgs),
                          self._view_filters)

    def org_ids(self, names: Sequence[str]) -> frozenset[str]:
        """The ids of the orgs named by id or by OrgRef; a name matching neither is a ValueError."""
        known = {}
        for h in self.orgs.handles:
            record = self.orgs.record(h)
            known[record["OrgId"]] = known[record["OrgRef"]] = record["OrgId"]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown org(s) {', '.join(unknown)}: give an OrgId or OrgRef of GET /system/orgs")
        return frozenset(known[n] for n in names)

    def counts(self) -> dict[str, int]:
        return {
            "orgs": len(self.orgs.handles),
            "machine_groups": len(self.groups.handles),
            "views": len(self.views.handles),
            "agents": len(self.agents),
        }


def org_table(orgs: Sequence[Org]) -> RecordTable:
    return RecordTable(ORG_SCHEMA, [o.record() for o in sorted(orgs, key=lambda o: o.name)], "OrgId")


def group_table(groups: Sequence[MachineGroup]) -> RecordTable:
    ordered = sorted(groups, key=lambda g: g.name)
    return RecordTable(GROUP_SCHEMA, [g.record() for g in ordered], "MachineGroupId")


def view_table(views: Sequence[View]) -> RecordTable:
    return RecordTable(VIEW_SCHEMA, [v.record() for v in sorted(views, key=lambda v: v.name)], "ViewDefId")


class World(ABC):
    """A scenario: answers ``state(date)``; caches the state of the last date asked for."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: WorldState | None = None

    @property
    @abstractmethod
    def default_date(self) -> date:
        """The date served until someone sets another."""

    def state(self, day: date) -> WorldState:
        with self._lock:
            if self._cached is None or self._cached.date != day:
                self._cached = None  # free the old date before building the new one
                self._cached = self._build_state(day)
            return self._cached

    @abstractmethod
    def _build_state(self, day: date) -> WorldState: ...
