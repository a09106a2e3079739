"""``contract_edits`` (migration 0022): what each ``contracts apply`` changed, kept for good.

``accounts``, ``contracts`` and ``services`` hold the file as last applied; this is how finance
traces a credit to the apply that caused it (``agent-billing contracts history ID``). One row
per field an entry is created with (its terms: a price, a start date), and one per field an
update or ``--prune`` changes, with the file, its line and one ``applied_at`` per apply. Values
are stored as text as the plan shows them (``plan.as_text``: dates ISO, a unit price as money,
none as NULL); a manual service's new units keep the day they take effect (``effective_date``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import groupby

import sqlalchemy as sa
from sqlalchemy import Connection, text

from agent_billing.contracts.plan import Plan, as_text, show
from agent_billing.warehouse.values import as_utc

_ID = {"account": "account_id", "contract": "contract_id", "service": "service_id"}
_TABLE = sa.table(  # untyped: an aware timestamp is stored as every other one (SQLite: text with +00:00)
    "contract_edits", *(sa.column(c) for c in (
        "applied_at", "source", "line", "kind", "entity_id", "action", "field", "old_value", "new_value")),
    sa.column("effective_date", sa.Date),
)


def record_edits(conn: Connection, plan: Plan, applied_at: datetime | None = None) -> int:
    """Write the plan's creates, updates and ends (in the apply's transaction); the row count."""
    at = applied_at or datetime.now(UTC)
    rows = []
    for e in plan.entries:
        base = {"applied_at": at, "source": plan.source, "line": e.line, "kind": e.kind,
                "entity_id": e.key, "action": e.action}
        if e.action == "create":  # its terms, the id itself aside (the row names it)
            rows += [{**base, "field": name, "old_value": None, "new_value": as_text(value, name), "effective_date": None}
                     for name, value in e.row.items() if value not in (None, "") and name != _ID[e.kind]]
        elif e.action in ("update", "end"):
            effective = e.unit_change.effective_date if e.unit_change else None
            rows += [{**base, "field": c.field, "old_value": as_text(c.old, c.field),
                      "new_value": as_text(c.new, c.field), "effective_date": effective if c.field == "units" else None}
                     for c in e.changes]
    if rows:
        conn.execute(sa.insert(_TABLE), rows)
    return len(rows)


@dataclass(frozen=True)
class Edit:
    applied_at: datetime | str  # SQLite: text
    source: str
    line: int | None
    kind: str
    entity_id: str
    action: str
    field: str | None
    old_value: str | None
    new_value: str | None
    effective_date: date | None

    def describe(self, terms: list[Edit] | None = None) -> str:
        """One line; ``terms``: the rows of the same create (the line lists them all)."""
        at = as_utc(self.applied_at)  # SQLite hands back text
        where = f"{self.source}:{self.line}" if self.line else self.source
        if self.action == "create":
            given = ", ".join(f"{t.field} {show(t.new_value)}" for t in terms or [self] if t.field)
            what = f"created: {given}" if given else "created"
        else:
            what = (f"{self.field}: {show(self.old_value)} → {show(self.new_value)}"
                    + (f" from {self.effective_date}" if self.effective_date else "")
                    + (" (--prune)" if self.action == "end" else ""))
        return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z  {where}  {self.kind} {self.entity_id}  {what}"


def history_lines(edits: list[Edit]) -> list[str]:
    """``Edit.describe`` of each edit, the rows of one create on one line (they are written
    together, so they come in a run; a create recorded by 0022's code has one row, no field)."""
    lines: list[str] = []
    for (*_, action), run in groupby(edits, key=lambda e: (e.applied_at, e.kind, e.entity_id, e.action)):
        rows = list(run)
        lines += [rows[0].describe(rows)] if action == "create" else [e.describe() for e in rows]
    return lines


_HISTORY = text("""
SELECT applied_at, source, line, kind, entity_id, action, field, old_value, new_value, effective_date
FROM contract_edits e
WHERE e.entity_id = :id
   OR (e.kind = 'contract' AND e.entity_id IN (SELECT contract_id FROM contracts WHERE account_id = :id))
   OR (e.kind = 'service' AND e.entity_id IN (
        SELECT s.service_id FROM services s JOIN contracts c ON c.contract_id = s.contract_id
        WHERE s.contract_id = :id OR c.account_id = :id))
ORDER BY applied_at, edit_id
""").columns(source=sa.Text, line=sa.Integer, kind=sa.Text, entity_id=sa.Text, action=sa.Text,
             field=sa.Text, old_value=sa.Text, new_value=sa.Text, effective_date=sa.Date)

_KNOWN = text("""
SELECT 'account' FROM accounts WHERE account_id = :id
UNION ALL SELECT 'contract' FROM contracts WHERE contract_id = :id
UNION ALL SELECT 'service' FROM services WHERE service_id = :id
""")


def edit_history(conn: Connection, entity_id: str) -> tuple[list[str], list[Edit]]:
    """The kinds ``entity_id`` names (empty: unknown) and its edits, with those of what it holds
    (an account's contracts and services, a contract's services), oldest first."""
    kinds = list(conn.execute(_KNOWN, {"id": entity_id}).scalars())
    edits = [Edit(*row) for row in conn.execute(_HISTORY, {"id": entity_id})]
    return kinds, edits
