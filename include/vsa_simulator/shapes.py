"""What VSA records look like: entities, field types, Filterable/Sortable flags, agent rendering.

Field names, order and JSON types follow the reference's §4 and §6 samples; the F/S flags follow
the R93 schema tables. An agent record is derived from a handful of per-agent facts
(:class:`AgentFacts`), so a scenario of a million agents stores only those facts and renders the
~40 fields of one page on demand.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

# Decimal id fields: decimal strings of up to 26 digits, rendered as JSON strings by default.
ID_FIELDS = frozenset(
    {"AgentId", "OrgId", "MachineGroupId", "ParentOrgId", "ParentMachineGroupId", "ViewDefId"}
)

_MASK64 = (1 << 64) - 1


def mix(*parts: int) -> int:
    """A fast deterministic 64-bit hash of some ints (splitmix-style), for per-agent noise."""
    x = 0x9E3779B97F4A7C15
    for part in parts:
        x = ((x ^ part) * 0xBF58476D1CE4E5B9) & _MASK64
        x ^= x >> 31
    return x


def iso_utc(moment: datetime | None) -> str | None:
    """VSA's agent timestamp format: ``2025-05-14T08:39:55.260Z`` (fixed width, so sortable)."""
    if moment is None:
        return None
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def snapshot_time(day: date) -> datetime:
    """The moment a date's state describes: 01:00 UTC, when the nightly extract runs."""
    return datetime.combine(day, time(1, 0))


@dataclass(frozen=True)
class Schema:
    """A collection's fields: type names, and which may be filtered and sorted on."""

    entity: str
    types: Mapping[str, str]  # string | int | decimal | datetime | bool | object
    filterable: frozenset[str]
    sortable: frozenset[str]


@dataclass(frozen=True)
class Org:
    org_id: str
    ref: str
    name: str
    parent_id: str | None = None

    def record(self) -> dict[str, Any]:
        salt = int(self.org_id)
        return {
            "OrgId": self.org_id,
            "OrgName": self.name,
            "OrgRef": self.ref,
            "OrgType": "Customer",
            "DefaultDepartmentName": "root",
            "DefaultMachineGroupName": "root",
            "ParentOrgId": self.parent_id,
            "Website": f"https://{self.ref}.example",
            "NoOfEmployees": 5 + salt % 400,
            "AnnualRevenue": 0,
            "ContactInfo": {
                "PreferredContactMethod": "Email",
                "PrimaryPhone": f"+1 555 {salt % 10000:04d}",
                "PrimaryFax": "",
                "PrimaryEmail": f"it@{self.ref}.example",
                "Country": "US",
                "Street": f"{1 + salt % 900} Main Street",
                "City": "Springfield",
                "State": "",
                "ZipCode": f"{salt % 100000:05d}",
                "PrimaryTextMessagePhone": "",
            },
            "CustomFields": [{"FieldName": "BillingCode", "FieldValue": self.ref.upper()}],
            "Attributes": None,
        }


@dataclass(frozen=True)
class MachineGroup:
    """A machine group; ``name`` runs org-first (``contoso.root.servers``)."""

    group_id: str
    name: str
    parent_id: str | None
    org_id: str
    # The agent-side spelling, most specific first (``servers.root.contoso``).
    path: str = field(init=False, compare=False)
    org_ref: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", ".".join(reversed(self.name.split("."))))
        object.__setattr__(self, "org_ref", self.name.split(".", 1)[0])

    def record(self) -> dict[str, Any]:
        return {
            "MachineGroupId": self.group_id,
            "MachineGroupName": self.name,
            "ParentMachineGroupId": self.parent_id,
            "OrgId": self.org_id,
            "Attributes": None,
        }


@dataclass(frozen=True)
class View:
    view_id: str
    name: str

    def record(self) -> dict[str, Any]:
        return {"ViewDefId": self.view_id, "ViewDefName": self.name}


@dataclass(frozen=True)
class OsProfile:
    key: str
    os_type: str
    os_info: str
    operating_system: str
    os_version: str
    server: bool


OS_PROFILES: Mapping[str, OsProfile] = {
    p.key: p
    for p in (
        OsProfile("win2019", "2019", "Standard x64 Edition Build 17763", "Windows Server 2019", "10.0.17763", True),
        OsProfile("win2022", "2022", "Standard x64 Edition Build 20348", "Windows Server 2022", "10.0.20348", True),
        OsProfile("win2016", "2016", "Standard x64 Edition Build 14393", "Windows Server 2016", "10.0.14393", True),
        OsProfile("linux", "Linux", "Ubuntu 22.04.4 LTS", "Linux", "5.15.0-107", True),
        OsProfile("win10", "10", "Professional x64 Edition Build 19045", "Windows 10", "10.0.19045", False),
        OsProfile("win11", "11", "Professional x64 Edition Build 22631", "Windows 11", "10.0.22631", False),
        OsProfile("macos", "Mac OS X", "macOS Sonoma 14.5", "Mac OS X", "14.5", False),
    )
}


class AgentFacts(ABC):
    """Per-date facts about agent handles (ints a scenario hands out); all fields derive from them."""

    @abstractmethod
    def agent_id(self, h: int) -> str: ...

    @abstractmethod
    def machine(self, h: int) -> str:
        """The machine name: the first segment of AgentName."""

    @abstractmethod
    def group(self, h: int) -> MachineGroup: ...

    @abstractmethod
    def online(self, h: int) -> int: ...

    @abstractmethod
    def last_checkin(self, h: int) -> datetime | None: ...

    @abstractmethod
    def first_checkin(self, h: int) -> datetime | None: ...

    @abstractmethod
    def os(self, h: int) -> OsProfile: ...

    @abstractmethod
    def noise(self, h: int) -> int:
        """A stable 64-bit number per agent that picks its cosmetic values (IP, RAM, ...)."""

    @abstractmethod
    def find(self, agent_id: str) -> int | None:
        """The handle of a live agent with this id on this date, else None."""


_TIMEZONES = ("Eastern Standard Time", "Central Standard Time", "Pacific Standard Time",
              "W. Europe Standard Time", "GMT Standard Time")
_CPUS = (("Intel(R) Core(TM) i5", 2400), ("Intel(R) Core(TM) i7", 2803),
         ("Intel(R) Xeon(R)", 2394), ("AMD Ryzen 7 PRO", 3200))


def _subnet(f: AgentFacts, h: int) -> str:
    n = f.noise(h)
    return f"10.{n >> 8 & 255}.{n >> 16 & 255}"


def _reboot(f: AgentFacts, h: int) -> str | None:
    seen = f.last_checkin(h)
    if seen is None:
        return None
    first = f.first_checkin(h) or seen
    return iso_utc(max(first, seen - timedelta(hours=f.noise(h) % 400)))


def _user(f: AgentFacts, h: int) -> str:
    return f"{f.group(h).org_ref.upper()}\\user{f.noise(h) >> 24 & 1023}"


AgentGetter = Callable[[AgentFacts, int], Any]

# Agent fields in the order VSA sends them; each derives from the facts of one handle.
AGENT_GETTERS: Mapping[str, AgentGetter] = {
    "AgentId": lambda f, h: f.agent_id(h),
    "AgentName": lambda f, h: f"{f.machine(h)}.{f.group(h).path}",
    "Online": lambda f, h: f.online(h),
    "OSType": lambda f, h: f.os(h).os_type,
    "OSInfo": lambda f, h: f.os(h).os_info,
    "OrgId": lambda f, h: f.group(h).org_id,
    "MachineGroupId": lambda f, h: f.group(h).group_id,
    "MachineGroup": lambda f, h: f.group(h).path,
    "ComputerName": lambda f, h: f.machine(h).upper(),
    "IPv6Address": lambda f, h: "",
    "IPAddress": lambda f, h: f"{_subnet(f, h)}.{f.noise(h) >> 32 & 252 | 2}",
    "OperatingSystem": lambda f, h: f.os(h).operating_system,
    "OSVersion": lambda f, h: f.os(h).os_version,
    "LastLoggedInUser": lambda f, h: _user(f, h) if f.online(h) != 199 else "",
    "LastRebootTime": _reboot,
    "LastCheckInTime": lambda f, h: iso_utc(f.last_checkin(h)),
    "Country": lambda f, h: "",
    "CurrentUser": lambda f, h: _user(f, h) if f.online(h) in (11, 12) else "",
    "Contact": lambda f, h: "",
    "TimeZone": lambda f, h: _TIMEZONES[int(f.group(h).org_id) % len(_TIMEZONES)],
    "RamMBytes": lambda f, h: 4096 << (f.noise(h) >> 40) % 4,
    "CpuCount": lambda f, h: 2 << (f.noise(h) >> 42) % 3,
    "CpuSpeed": lambda f, h: _CPUS[(f.noise(h) >> 44) % len(_CPUS)][1],
    "CpuType": lambda f, h: _CPUS[(f.noise(h) >> 44) % len(_CPUS)][0],
    "DomainWorkgroup": lambda f, h: f"{f.group(h).org_ref.upper()} (d)",
    "AgentFlags": lambda f, h: 0,
    "AgentVersion": lambda f, h: 9050020,
    "ToolTipNotes": lambda f, h: "",
    "ShowToolTip": lambda f, h: 0,
    "DefaultGateway": lambda f, h: f"{_subnet(f, h)}.1",
    "DNSServer1": lambda f, h: f"{_subnet(f, h)}.10",
    "DNSServer2": lambda f, h: "",
    "DHCPServer": lambda f, h: f"{_subnet(f, h)}.10",
    "PrimaryWINS": lambda f, h: "",
    "SecondaryWINS": lambda f, h: "",
    "ConnectionGatewayIP": lambda f, h: f"203.0.113.{f.noise(h) >> 48 & 255}",
    "FirstCheckIn": lambda f, h: iso_utc(f.first_checkin(h)),
    "PrimaryKServer": lambda f, h: "vsa.example.net",
    "SecondaryKServer": lambda f, h: "",
    "Attributes": lambda f, h: None,
    "OneClickAccess": lambda f, h: False,
    "SystemSerialNumber": lambda f, h: f"5CG{f.noise(h) % 10_000_000:07d}",
    "MacAddr": lambda f, h: "-".join(f"{f.noise(h) >> s & 255:02X}" for s in (0, 8, 16, 24, 32, 40)),
}

_AGENT_TYPES = {name: "string" for name in AGENT_GETTERS}
_AGENT_TYPES.update(
    dict.fromkeys(("AgentId", "OrgId", "MachineGroupId"), "decimal")
    | dict.fromkeys(("Online", "RamMBytes", "CpuCount", "CpuSpeed", "AgentFlags", "AgentVersion",
                     "ShowToolTip"), "int")
    | dict.fromkeys(("LastRebootTime", "LastCheckInTime", "FirstCheckIn"), "datetime")
    | {"OneClickAccess": "bool", "Attributes": "object"}
)
_AGENT_SORTABLE = frozenset(
    {"AgentName", "MachineGroup", "ComputerName", "IPAddress", "OperatingSystem", "OSVersion",
     "LastLoggedInUser", "CurrentUser", "Contact", "Country", "TimeZone", "LastRebootTime",
     "LastCheckInTime", "RamMBytes", "CpuCount", "CpuSpeed", "CpuType", "DomainWorkgroup",
     "FirstCheckIn"}
)

AGENT_SCHEMA = Schema(
    entity="Agent",
    types=_AGENT_TYPES,
    filterable=_AGENT_SORTABLE
    | {"AgentId", "Online", "OSType", "OSInfo", "OrgId", "MachineGroupId", "IPv6Address",
       "AgentFlags", "AgentVersion"},
    sortable=_AGENT_SORTABLE,
)
ORG_SCHEMA = Schema(
    entity="Org",
    types={"OrgId": "decimal", "OrgName": "string", "OrgRef": "string", "OrgType": "string",
           "DefaultDepartmentName": "string", "DefaultMachineGroupName": "string",
           "ParentOrgId": "decimal", "Website": "string", "NoOfEmployees": "int",
           "AnnualRevenue": "decimal", "ContactInfo": "object", "CustomFields": "object",
           "Attributes": "object"},
    filterable=frozenset({"OrgId", "OrgName", "OrgRef", "ParentOrgId", "NoOfEmployees",
                          "AnnualRevenue"}),
    sortable=frozenset({"OrgName", "OrgRef", "NoOfEmployees", "AnnualRevenue"}),
)
GROUP_SCHEMA = Schema(
    entity="MachineGroup",
    types={"MachineGroupId": "decimal", "MachineGroupName": "string",
           "ParentMachineGroupId": "decimal", "OrgId": "decimal", "Attributes": "object"},
    filterable=frozenset({"MachineGroupId", "MachineGroupName", "ParentMachineGroupId", "OrgId"}),
    sortable=frozenset({"MachineGroupName", "OrgId"}),
)
VIEW_SCHEMA = Schema(
    entity="ViewDefinition",
    types={"ViewDefId": "decimal", "ViewDefName": "string"},
    filterable=frozenset({"ViewDefName"}),
    sortable=frozenset({"ViewDefName"}),
)
