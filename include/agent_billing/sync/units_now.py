"""Get Units Now (SPEC 4.4): count one service's scope in VSA immediately and set its units.

Cheap by design: without exclusions it reads ``TotalRecords`` of a ``$top=1`` query filtered
on the scope's machine groups (or org), in the service's view if it has one. Exclusions need
each agent's ``Online`` and last check-in, so then the scope's agents are paged, read by the
load's rules and tallied, and the warehouse applies the night's own exclusion rule
(``include/sql/sync/agent_is_counted.sql``) to the tally. A different count is recorded as a unit change
effective today (billing timezone) with source ``get_units_now``, and the contract's
recipients get a mail about it (through the outbox).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import Engine, text

from agent_billing.errors import UserError
from agent_billing.sql import load_sql
from agent_billing.sync.changes import READING, day_change, lock_unit_history, record_reading
from agent_billing.sync.load import clean_agent, days_since_checkin
from agent_billing.sync.notify import queue_mail_for
from agent_billing.vsa.client import VsaClient, id_filter
from agent_billing.warehouse.values import as_date

log = logging.getLogger(__name__)
SOURCE = READING  # "get_units_now"


@dataclass(frozen=True)
class UnitsNow:
    service_id: str
    units_before: int
    units_after: int
    effective_date: date
    change_recorded: bool  # the day's press change is units_before → units_after (False: none)
    replaced: tuple[int, int] | None = None  # the day's press change before this press, if any


def get_units_now(engine: Engine, client: VsaClient, service_id: str, *, tz, now: datetime | None = None) -> UnitsNow:
    service_id = service_id.strip()  # as the contracts file trims ids (a DAG param pasted with a space)
    now = now or datetime.now(UTC)
    today = now.astimezone(tz).date()
    with engine.connect() as conn:
        service = conn.execute(
            text(
                "SELECT s.*, a.vsa_org_id, c.start_date AS contract_start, c.end_date AS contract_end "
                "FROM services s JOIN contracts c ON c.contract_id = s.contract_id "
                "JOIN accounts a ON a.account_id = c.account_id WHERE s.service_id = :sid"
            ),
            {"sid": service_id},
        ).mappings().first()
        held = _held_night(conn, today)
    if service is None:
        raise UserError(f"service {service_id!r} not found")
    if service["units_source"] != "rmm_agent_count":
        raise UserError(f"service {service_id} is {service['units_source']}: its units are not counted in VSA")
    _refuse_outside_dates(service, today)
    _refuse_held(held)
    units = count_scope(engine, client, dict(service), today)
    log.info("Get Units Now for %s: %d agents in VSA (was %d)", service_id, units, service["units"])
    with engine.begin() as conn:
        lock_unit_history(conn)  # a night's verdict is written under it: judged now or before the count
        _refuse_held(_held_night(conn, today))  # quarantined while VSA was counted: nothing written
        earlier = day_change(conn, service_id, today, SOURCE)
        found = record_reading(conn, tz, service_id, now, units)
        mine = [c for c in found.changes
                if c.service_id == service_id and c.source == SOURCE and c.effective_date == today]
        change = (mine[-1].units_before, mine[-1].units_after) if mine else None
        # This press's mail (also correcting an earlier press's), and of any other change it moved
        queue_mail_for(conn, found.moved | {(today, SOURCE, service_id)})
    return UnitsNow(service_id, change[0] if change else units, units, today, change is not None,
                    (earlier.units_before, earlier.units_after) if earlier else None)


def _held_night(conn, today: date):
    """A night up to today the quarantine held, after the latest complete one (None: none)."""
    return conn.execute(
        text("SELECT snapshot_date, status FROM sync_runs WHERE status IN ('quarantined', 'discarded') "
             "AND snapshot_date <= :today AND snapshot_date > COALESCE((SELECT MAX(snapshot_date) "
             "FROM sync_runs WHERE status = 'complete' AND snapshot_date <= :today), :never) "
             "ORDER BY snapshot_date LIMIT 1"),
        {"today": today, "never": date.min},
    ).first()


def _refuse_held(held) -> None:
    """A press reads the same VSA as the held night: it would record the drop held back."""
    if held is None:  # a gap after a held night does not make VSA trustworthy again: only a complete night
        return
    night = as_date(held.snapshot_date)
    if held.status == "quarantined":
        raise UserError(
            f"the night of {night} is quarantined (VSA reported too many agents gone): a press reads the "
            f"same VSA and would record the drop the quarantine holds back; release or discard {night} "
            f"first (agent-billing snapshots release|discard {night})"
        )
    raise UserError(
        f"the night of {night} was discarded (VSA's count judged wrong) and no night since is complete: "
        "a press reads the same VSA and would record the drop that was discarded; press again after the "
        "next complete night"
    )


def _refuse_outside_dates(service, today: date) -> None:
    """A press records nothing outside the dates both the service and its contract run (the
    night counts neither: its change would be mailed and never billed)."""
    starts = [as_date(service["start_date"]), as_date(service["contract_start"])]
    ends = [as_date(d) for d in (service["end_date"], service["contract_end"]) if d]
    start, end = max(starts), min(ends, default=None)
    if today < start or (end is not None and today > end):
        raise UserError(
            f"service {service['service_id']} is not active on {today} (it and its contract run {start} to "
            f"{end or 'open end'}): Get Units Now records nothing outside their dates"
        )


# About 45 characters per id in a $filter: 30 keep a query under IIS's default 2,048-byte limit.
GROUPS_PER_QUERY = 30


def count_scope(engine: Engine, client: VsaClient, service: dict, today: date) -> int:
    """Agents in the service's scope now, as the nightly count of ``today`` (billing timezone)
    would count them.

    Each agent is in exactly one machine group, so counts of disjoint batches of groups add up.
    A scope that points at nothing in VSA is refused (``ScopeMissing``) before anything is counted.
    """
    org, group, view_id = service["vsa_org_id"], service["vsa_machine_group_id"], service["vsa_view_id"]
    if view_id and not any(v.get("ViewDefId") == view_id for v in client.iter_views()):
        raise ScopeMissing(service["service_id"], "view", view_id)
    if group:
        groups = _scope_groups(client, service["service_id"], org, group, service["include_subgroups"])
        scopes = [
            id_filter("MachineGroupId", groups[i : i + GROUPS_PER_QUERY])
            for i in range(0, len(groups), GROUPS_PER_QUERY)
        ]
    else:
        if client.count("orgs", filter=id_filter("OrgId", [org])) == 0:
            raise ScopeMissing(service["service_id"], "org", org)
        scopes = [id_filter("OrgId", [org])]
    if not service["exclude_never_checked_in"] and service["exclude_offline_days"] is None:
        return sum(client.count_agents(filter=scope, view_id=view_id) for scope in scopes)
    resource = "agents_in_view" if view_id else "agents"

    def tally(records) -> Counter:
        """The scope's agents by what the exclusions look at, as the load writes it."""
        found: Counter = Counter()
        for record in records:
            agent = clean_agent(record)
            found[agent.Online, days_since_checkin(today, agent.LastCheckInTime)] += 1
        return found

    agents: Counter = Counter()
    for scope in scopes:
        agents += client.extract(resource, tally, filter=scope, view_id=view_id)
    return _counted(engine, service["service_id"], agents)


def _counted(engine: Engine, service_id: str, agents: Counter) -> int:
    """How many of the tallied agents the service counts, by ``agent_is_counted.sql``."""
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS units_now_agents"))
        conn.execute(text(
            "CREATE TEMPORARY TABLE units_now_agents "
            "(online INTEGER, days_since_checkin INTEGER, agents INTEGER NOT NULL)"
        ))
        if agents:
            conn.execute(
                text("INSERT INTO units_now_agents VALUES (:online, :days, :agents)"),
                [{"online": o, "days": d, "agents": n} for (o, d), n in agents.items()],
            )
        counted = conn.execute(load_sql("sync/units_now_counted.sql"), {"service_id": service_id}).scalar_one()
        conn.execute(text("DROP TABLE units_now_agents"))
    return int(counted)


class ScopeMissing(UserError):
    """The service's org, machine group or view is not in VSA now (deleted, moved, or outside
    the API user's scope): counting it would record 0 units, a credit of the whole service."""

    def __init__(self, service_id: str, missing: str, missing_id: str, org_id: str | None = None) -> None:
        what = f"machine group {missing_id} of org {org_id}" if missing == "machine_group" else f"{missing} {missing_id}"
        super().__init__(
            f"service {service_id}: its {what} is not in VSA now (deleted, moved to another org, or "
            "outside the API user's scope); Get Units Now recorded nothing. Fix the service's scope "
            "in the contracts file, or VSA, and press again"
        )


def _scope_groups(client: VsaClient, service_id: str, org: str, root: str, include_subgroups: bool) -> list[str]:
    """The machine groups the scope counts: ``root`` (which must belong to the account's org,
    as the night requires: ``scope_problems.sql``) and, with subgroups, the tree under it."""
    if not include_subgroups:
        in_org = f"{id_filter('MachineGroupId', [root])} and {id_filter('OrgId', [org])}"
        if client.count("machine_groups", filter=in_org) == 0:
            raise ScopeMissing(service_id, "machine_group", root, org)
        return [root]
    children: dict[str | None, list[str]] = {}
    root_found = False
    for group in client.iter_machine_groups():
        children.setdefault(group.get("ParentMachineGroupId"), []).append(group["MachineGroupId"])
        root_found = root_found or (group["MachineGroupId"] == root and group.get("OrgId") == org)
    if not root_found:
        raise ScopeMissing(service_id, "machine_group", root, org)
    found, todo = [], [root]
    while todo:
        group_id = todo.pop()
        found.append(group_id)
        todo.extend(children.get(group_id, []))
    return sorted(set(found))
