"""A deterministic generated VSA world, from a few hundred agents to a million and more.

Each agent's whole life is drawn up front and stored compactly in parallel ``array`` columns
(birth day, death day, move day, group before and after, OS, status), a few bytes per agent.
Machine names are ``<word>-<zero-padded index>``, so AgentName order is "by word, then by
index" whatever group the agent is in: one global order is sorted once, and a date's agents
are a filter of it. Records render lazily, a page at a time.
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Callable
from datetime import date, datetime, timedelta
from itertools import accumulate

from vsa_simulator.model import (
    AgentTable,
    World,
    WorldState,
    group_table,
    org_table,
    view_table,
)
from vsa_simulator.shapes import (
    OS_PROFILES,
    AgentFacts,
    MachineGroup,
    Org,
    OsProfile,
    View,
    mix,
    snapshot_time,
)

NEVER = 2**31 - 1  # "no such day": not deleted, never moved
_OK, _NEVER_CHECKED_IN, _STALE, _SUSPENDED = range(4)

_PROFILES: tuple[OsProfile, ...] = tuple(OS_PROFILES.values())
_IS_SERVER: tuple[bool, ...] = tuple(p.server for p in _PROFILES)
# OS mixes as 20 equally likely slots (server: 40% 2019, 35% 2022, 15% 2016, 10% Linux).
_SERVER_SLOTS = tuple(list(OS_PROFILES).index(k) for k in ["win2019"] * 8 + ["win2022"] * 7 + ["win2016"] * 3 + ["linux"] * 2)
_DESKTOP_SLOTS = tuple(list(OS_PROFILES).index(k) for k in ["win10"] * 9 + ["win11"] * 9 + ["macos"] * 2)
# Words are sorted and none is a prefix of another, so names sort by (word, index).
_WORDS_BY_OS = {"win2019": ("dc", "fs", "sql", "srv"), "win2022": ("dc", "fs", "sql", "srv"),
                "win2016": ("dc", "fs", "sql", "srv"), "linux": ("app", "web"),
                "win10": ("desk", "lt", "pc", "ws"), "win11": ("desk", "lt", "pc", "ws"),
                "macos": ("mac",)}
WORDS = tuple(sorted({w for words in _WORDS_BY_OS.values() for w in words}))
_WORD_RANKS = [tuple(WORDS.index(w) for w in _WORDS_BY_OS[p.key]) for p in _PROFILES]

_ORG_WORDS = ("contoso", "fabrikam", "northwind", "adatum", "litware", "tailspin", "wingtip",
              "woodgrove", "proseware", "lucerne", "fourthcoffee", "alpineski", "margie",
              "relecloud", "wideworld", "cohowinery", "blueyonder", "treyresearch", "humongous",
              "southridge", "lamna", "munson", "vanarsdel", "fincher", "bellows", "cpandl")
_ORG_SUFFIXES = ("Ltd", "Inc", "LLC", "GmbH", "BV", "Group")
_SUBGROUPS = ("servers", "workstations", "laptops", "hq", "branch", "remote", "lab", "finance")
_LEAVES = ("sql", "dc", "web", "ny", "london", "floor1", "floor2", "kiosk")
_SERVERISH = frozenset({"servers", "sql", "dc", "web"})

VIEW_SERVERS = "Billable - Servers"
VIEW_WORKSTATIONS = "Billable - Workstations"
VIEW_PATCHED = "Patched this week"


class _Ids:
    """Unique decimal ids, never stored as int64: 26-digit ones drawn, 15-digit AgentIds computed.

    AgentId = 10^14 + (index * mult + add) mod 9*10^14, a bijection (mult is coprime to the
    modulus), so an id is computed from its index and an index recovered from its id.
    """

    SPAN = 9 * 10**14

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._seen: set[str] = set()
        mult = rng.randrange(10**13, 10**14) | 1
        while mult % 3 == 0 or mult % 5 == 0:
            mult += 2
        self.mult, self.add = mult, rng.randrange(self.SPAN)
        self.inverse = pow(mult, -1, self.SPAN)

    def draw(self, digits: int) -> str:
        while True:
            value = str(self._rng.randrange(10 ** (digits - 1), 10**digits))
            if value not in self._seen:
                self._seen.add(value)
                return value

    def agent_id(self, index: int) -> str:
        return str(10**14 + (index * self.mult + self.add) % self.SPAN)

    def agent_index(self, agent_id: str) -> int | None:
        if len(agent_id) != 15 or not agent_id.isdigit() or agent_id[0] == "0":
            return None
        return ((int(agent_id) - 10**14 - self.add) * self.inverse) % self.SPAN


class GeneratedScenario(World):
    """A deterministic MSP: ``orgs`` customers with ``agents`` agents on ``start``, churning daily.

    Each org has a ``root`` group and subgroups (a tree up to three levels). Each day about
    ``daily_churn`` x the starting population changes: 40% adds, 30% deletions, 30% moves
    (mostly within the org, one in ten across orgs). Some agents never checked in (Online
    199, LastCheckInTime null), some go stale, a few are suspended (198). Three views:
    "Billable - Servers" and "Billable - Workstations" (by OS), and "Patched this week",
    whose membership grows through each ISO week and resets on Monday without anyone moving.
    Events are drawn for ``days`` days after ``start``; after that the world stands still.
    The same arguments always give the same world.
    """

    def __init__(
        self,
        seed: int = 42,
        orgs: int = 30,
        agents: int = 3000,
        start: date = date(2024, 1, 1),
        daily_churn: float = 0.004,
        *,
        days: int = 366,
        never_checked_in: float = 0.015,
        stale: float = 0.03,
        suspended: float = 0.005,
    ) -> None:
        if orgs < 1 or agents < 0 or days < 1 or not 0 <= daily_churn < 1:
            raise ValueError("need orgs >= 1, agents >= 0, days >= 1 and 0 <= daily_churn < 1")
        super().__init__()
        rng = random.Random(seed)
        self.start, self.days = start, days
        self._salt = rng.getrandbits(64)
        self._ids = _Ids(rng)
        self.orgs = self._make_orgs(rng, orgs)
        self.groups, group_cum, server_share = self._make_groups(rng)
        self.views = [View(self._ids.draw(8), name)
                      for name in (VIEW_SERVERS, VIEW_WORKSTATIONS, VIEW_PATCHED)]
        self._make_agents(rng, agents, daily_churn, group_cum, server_share,
                          (never_checked_in, stale, suspended))
        self._org_table = org_table(self.orgs)
        self._group_table = group_table(self.groups)
        self._view_table = view_table(self.views)

    @property
    def default_date(self) -> date:
        return self.start

    @property
    def total_agents(self) -> int:
        """Agents ever alive in this world (the starting ones and every later add)."""
        return len(self._birth)

    def _make_orgs(self, rng: random.Random, count: int) -> list[Org]:
        orgs: list[Org] = []
        top_level: list[Org] = []
        for i in range(count):
            word = _ORG_WORDS[i % len(_ORG_WORDS)]
            ref = word if i < len(_ORG_WORDS) else f"{word}{i // len(_ORG_WORDS)}"
            parent = rng.choice(top_level).org_id if i >= 5 and rng.random() < 0.1 else None
            org = Org(self._ids.draw(26), ref, f"{ref.capitalize()} {rng.choice(_ORG_SUFFIXES)}", parent)
            orgs.append(org)
            if parent is None:
                top_level.append(org)
        return orgs

    def _make_groups(self, rng: random.Random) -> tuple[list[MachineGroup], list[float], list[float]]:
        """The group trees, the cumulative weights agents are spread by, and each group's server share.

        Also indexes which org each group belongs to, and each org's groups (for moves).
        """
        org_weights = [1 / (i + 1) ** 0.8 for i in range(len(self.orgs))]
        rng.shuffle(org_weights)
        groups: list[MachineGroup] = []
        weights: list[float] = []
        server_share: list[float] = []
        self._group_org: list[int] = []
        for o, org in enumerate(self.orgs):
            root = MachineGroup(self._ids.draw(26), f"{org.ref}.root", None, org.org_id)
            tree = [(root, 1.0, 0.2)]
            for sub in rng.sample(_SUBGROUPS, rng.randint(1, 4)):
                child = MachineGroup(self._ids.draw(26), f"{root.name}.{sub}", root.group_id, org.org_id)
                tree.append((child, rng.uniform(0.5, 3.0), 0.9 if sub in _SERVERISH else 0.08))
                if rng.random() < 0.3:
                    for leaf in rng.sample(_LEAVES, rng.randint(1, 2)):
                        grandchild = MachineGroup(self._ids.draw(26), f"{child.name}.{leaf}",
                                                  child.group_id, org.org_id)
                        serverish = leaf in _SERVERISH or sub in _SERVERISH
                        tree.append((grandchild, rng.uniform(0.5, 2.0), 0.9 if serverish else 0.08))
            total = sum(w for _, w, _ in tree)
            for group, weight, share in tree:
                groups.append(group)
                weights.append(org_weights[o] * weight / total)
                server_share.append(share)
                self._group_org.append(o)
        self._org_groups: list[list[int]] = [[] for _ in self.orgs]
        for g, o in enumerate(self._group_org):
            self._org_groups[o].append(g)
        return groups, list(accumulate(weights)), server_share

    def _make_agents(
        self,
        rng: random.Random,
        count: int,
        churn: float,
        group_cum: list[float],
        server_share: list[float],
        shares: tuple[float, float, float],
    ) -> None:
        days = self.days
        p_add, p_del, p_move = churn * 0.4, churn * 0.3, churn * 0.3
        adds = round(count * p_add * days)
        total = count + adds
        rand = rng.random
        # Plain comprehensions over rng.random(): a million agents draw in about two seconds.
        self._birth = birth = array("i", [-30 - int(rand() * 1470) for _ in range(count)])
        birth.extend(sorted(1 + int(rand() * days) for _ in range(adds)))
        self._group0 = group0 = array("i", rng.choices(range(len(group_cum)), cum_weights=group_cum, k=total))
        self._os = os_ = array("b", [
            _SERVER_SLOTS[int(rand() * 20)] if rand() < server_share[g] else _DESKTOP_SLOTS[int(rand() * 20)]
            for g in group0
        ])
        never, stale, suspended = shares
        t1, t2, t3 = never, never + stale, never + stale + suspended
        self._status = array("b", [
            _OK if u >= t3 else _NEVER_CHECKED_IN if u < t1 else _STALE if u < t2 else _SUSPENDED
            for u in [rand() for _ in range(total)]
        ])
        at_risk = [b if b > 0 else 0 for b in birth]  # events happen from the start date on
        self._death = death = array("i", [
            d if (d := s + g) <= days else NEVER for s, g in zip(at_risk, _gaps(rng, p_del, total), strict=True)
        ])
        self._move = move = array("i", [
            m if (m := s + g) < d and m <= days else NEVER for s, g, d in zip(at_risk, _gaps(rng, p_move, total), death, strict=True)
        ])
        self._group1 = group1 = array("i", group0)
        for a in [a for a, m in enumerate(move) if m != NEVER]:
            group1[a] = self._move_target(rand, group0[a])
        word = array("b", [_WORD_RANKS[p][a % len(_WORD_RANKS[p])] for a, p in enumerate(os_)])
        self._word = word
        self._order = array("i", sorted(range(total), key=word.__getitem__))
        self._width = max(5, len(str(total - 1)))

    def _move_target(self, rand: Callable[[], float], g: int) -> int:
        siblings = self._org_groups[self._group_org[g]]
        if len(siblings) > 1 and rand() < 0.9:
            target = siblings[int(rand() * (len(siblings) - 1))]  # any sibling but the last...
            return siblings[-1] if target == g else target  # ...which stands in for g itself
        while True:  # across orgs (or the org has a single group)
            target = int(rand() * len(self.groups))
            if self._group_org[target] != self._group_org[g] or len(self.orgs) == 1:
                return target

    def _build_state(self, day: date) -> WorldState:
        off = (day - self.start).days
        birth, death = self._birth, self._death
        live = array("i", [a for a in self._order if birth[a] <= off < death[a]])
        facts = _Facts(self, day)
        agents = AgentTable(facts, live, complete=True)
        os_, status = self._os, self._status
        year, week, weekday = day.isocalendar()
        wk, salt = year * 100 + week, self._salt

        def patched(h: int) -> bool:
            return (status[h] != _NEVER_CHECKED_IN and mix(salt, h, wk) % 100 < 85
                    and mix(salt, h, wk, 1) % 7 < weekday)

        filters: dict[str, Callable[[int], bool]] = {
            self.views[0].view_id: lambda h: _IS_SERVER[os_[h]],
            self.views[1].view_id: lambda h: not _IS_SERVER[os_[h]],
            self.views[2].view_id: patched,
        }
        return WorldState(day, self._org_table, self._group_table, self._view_table, agents, filters)


def _gaps(rng: random.Random, p: float, n: int) -> list[int]:
    """Days until an event of daily probability ``p`` (geometric, at least 1), for n agents."""
    if p <= 0:
        return [NEVER] * n
    scale, rand, log = 1 / math.log1p(-p), rng.random, math.log
    return [1 + int(log(1.0 - rand()) * scale) for _ in range(n)]


class _Facts(AgentFacts):
    """The generated world's agents as seen on one date."""

    def __init__(self, world: GeneratedScenario, day: date) -> None:
        self.w = world
        self.off = (day - world.start).days
        self.now = snapshot_time(day)
        self._origin = snapshot_time(world.start)
        self._groups = world.groups

    def agent_id(self, h: int) -> str:
        return self.w._ids.agent_id(h)

    def machine(self, h: int) -> str:
        return f"{WORDS[self.w._word[h]]}-{h:0{self.w._width}d}"

    def group(self, h: int) -> MachineGroup:
        w = self.w
        return self._groups[w._group1[h] if self.off >= w._move[h] else w._group0[h]]

    def os(self, h: int) -> OsProfile:
        return _PROFILES[self.w._os[h]]

    def noise(self, h: int) -> int:
        return mix(self.w._salt, h)

    def _stale_day(self, h: int) -> int:
        return self.w._birth[h] + 10 + mix(self.w._salt, h, 7) % 120

    def online(self, h: int) -> int:
        status = self.w._status[h]
        if status == _NEVER_CHECKED_IN:
            return 199
        if status == _SUSPENDED:
            return 198
        if status == _STALE and self.off > self._stale_day(h):
            return 0
        r = mix(self.w._salt, h, self.off) % 100
        if _IS_SERVER[self.w._os[h]]:
            return 1 if r < 85 else 2 if r < 95 else 0
        return 11 if r < 35 else 12 if r < 55 else 1 if r < 70 else 0

    def first_checkin(self, h: int) -> datetime | None:
        if self.w._status[h] == _NEVER_CHECKED_IN:
            return None
        return self._origin + timedelta(days=self.w._birth[h] - 1, milliseconds=self.noise(h) % 82_800_000)

    def last_checkin(self, h: int) -> datetime | None:
        first = self.first_checkin(h)
        if first is None:
            return None
        status, daily = self.w._status[h], mix(self.w._salt, h, self.off)
        if status in (_STALE, _SUSPENDED) and self.off > self._stale_day(h):
            # stopped checking in on its stale day: the timestamp freezes there
            seen = self._origin + timedelta(days=self._stale_day(h), milliseconds=-(self.noise(h) % 36_000_000))
        elif self.online(h) == 0:
            seen = self.now - timedelta(milliseconds=3_600_000 + daily % 259_200_000)
        else:
            seen = self.now - timedelta(milliseconds=60_000 + daily % 3_000_000)
        return max(first, seen)

    def find(self, agent_id: str) -> int | None:
        h = self.w._ids.agent_index(agent_id)
        w = self.w
        if h is None or h >= len(w._birth) or not w._birth[h] <= self.off < w._death[h]:
            return None
        return h
