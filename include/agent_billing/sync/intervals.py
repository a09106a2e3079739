"""Membership over time as validity intervals (SCD type 2): storage that grows with change.

A history table holds one row per run of a key over consecutive *merged* dates
(``history_dates``): ``valid_from`` is the first merged date of the run, ``valid_to`` the first
merged date after it where the key is absent (exclusive; NULL = still present). A key is present
on a merged date D when ``valid_from <= D AND (valid_to IS NULL OR valid_to > D)``. Dates that
were never merged (gaps) say nothing. The form is canonical: one representation per history.

A key is its ``ids`` (non-null, the join columns) plus its ``attributes`` (nullable, compared
null-safely): a changed attribute closes one version and opens another. For one value of
``ids`` versions never overlap, so ``ids + valid_from`` is the primary key.

``set_date`` replaces a date's set and touches only the keys whose presence changes there (a
quiet night writes its churn, not its snapshot); ``forget_date`` removes a date and touches
only the rows that start or end on it. Both work for any date, in any order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import Connection, text

from agent_billing.warehouse.values import as_date

ANALYZE_AFTER = 1000  # rows written by a merge above which its table's statistics are refreshed
COVERS = "{t}.valid_from <= :d AND ({t}.valid_to IS NULL OR {t}.valid_to > :d)"


def null_safe_equals(dialect: str) -> str:
    """The operator that compares two values as equal when both are NULL."""
    return "IS" if dialect == "sqlite" else "IS NOT DISTINCT FROM"


@dataclass(frozen=True)
class History:
    table: str
    ids: tuple[str, ...]
    attributes: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return self.ids + self.attributes

    def same_key(self, a: str, b: str, dialect: str) -> str:
        """``a`` and ``b`` (table aliases) hold the same key; attributes compare null-safely."""
        same = null_safe_equals(dialect)
        return " AND ".join(
            [f"{a}.{c} = {b}.{c}" for c in self.ids] + [f"{a}.{c} {same} {b}.{c}" for c in self.attributes]
        )


AGENTS = History("vsa_agent_history", ("agent_id",), ("agent_name", "org_id", "machine_group_id", "never_checked_in"))
VIEW_MEMBERS = History("vsa_view_member_history", ("view_id", "agent_id"))
SERVICE_AGENTS = History("service_agent_history", ("service_id", "agent_id"))
# What each counted service's count read on a date (its scope, and the machine groups it covers
# there): the count compares with the date before only the services whose inputs changed.
SERVICE_SCOPES = History(
    "service_scope_history", ("service_id",),
    ("vsa_org_id", "vsa_machine_group_id", "vsa_view_id", "exclude_never_checked_in", "exclude_offline_days"),
)
SCOPE_GROUPS = History("service_group_history", ("service_id", "machine_group_id"))


def neighbours(conn: Connection, day: date) -> tuple[date | None, date | None]:
    """The merged dates just before and just after ``day`` (``history_dates`` is keyed by date)."""
    before = conn.execute(text("SELECT MAX(snapshot_date) FROM history_dates WHERE snapshot_date < :d"), {"d": day}).scalar()
    after = conn.execute(text("SELECT MIN(snapshot_date) FROM history_dates WHERE snapshot_date > :d"), {"d": day}).scalar()
    return (as_date(before) if before is not None else None, as_date(after) if after is not None else None)


def mark_merged(conn: Connection, day: date) -> None:
    if conn.execute(text("SELECT 1 FROM history_dates WHERE snapshot_date = :d"), {"d": day}).first() is None:
        conn.execute(text("INSERT INTO history_dates (snapshot_date) VALUES (:d)"), {"d": day})


def set_date(
    conn: Connection,
    history: History,
    day: date,
    source_sql: str,
    params: dict | None = None,
    *,
    only: tuple[str, ...] | None = None,
    changed_into: tuple[str, str] | None = None,
) -> int:
    """Make ``history`` hold exactly the keys of ``source_sql`` (a SELECT of ``history.columns``
    in that order, no duplicates) on ``day``, which becomes a merged date. Returns rows written.
    The caller serialises the merges of all dates (``changes.lock_unit_history``): a merge reads
    the next merged date, which a concurrent merge of another date would change unseen.

    The night's difference is found in one pass (the runs covering ``day`` fully joined to the
    source by key, into a temporary table) and then applied by key: a quiet night reads its
    snapshot and the runs covering it once, and writes its churn only.

    ``only`` (predicates on the key's columns, unqualified) compares just the keys that satisfy
    one of them: the caller knows every other key is present on ``day`` exactly when a run
    covers it, and ``source_sql`` gives the day's keys that satisfy one of them and no others.
    ``changed_into`` (a temporary table and one of the key's columns) receives that column of
    every key that arrives or leaves on ``day`` (a changed attribute is both)."""
    mark_merged(conn, day)
    _, nxt = neighbours(conn, day)
    p = {**(params or {}), "d": day, "n": nxt}
    t, dialect = history.table, conn.dialect.name
    cols = ", ".join(history.columns)
    n = _date_param("n", dialect)
    for name in ("merge_pairs", "merge_departed", "merge_arrived"):
        conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
    # Departures: the runs covering ``day`` whose key the source lacks; arrivals: the source's
    # keys no run covers (a changed attribute is both). A key has at most one run covering
    # ``day``, and the source no duplicates, so the join pairs each key at most once.
    same = null_safe_equals(dialect)
    changed = " OR ".join(
        [f"h.{history.ids[0]} IS NULL", f"src.{history.ids[0]} IS NULL"]
        + [f"NOT (h.{c} {same} src.{c})" for c in history.attributes]
    )
    covering = f"SELECT {cols}, valid_from, valid_to FROM {t} WHERE {COVERS.format(t=t)}"
    if only is not None:  # one branch per predicate, each served by its own index
        covering = " UNION ".join(f"{covering} AND ({predicate})" for predicate in only)
    conn.execute(text(
        "CREATE TEMPORARY TABLE merge_pairs AS SELECT "
        + ", ".join([f"h.{c} AS h_{c}" for c in history.columns] + ["h.valid_from AS h_valid_from", "h.valid_to AS h_valid_to"]
                    + [f"src.{c} AS n_{c}" for c in history.columns])
        + f" FROM ({covering}) h"
        + f" FULL JOIN (SELECT {cols} FROM ({source_sql}) src_q) src ON "
        + " AND ".join(f"h.{c} = src.{c}" for c in history.ids)
        + f" WHERE {changed}"
    ), p)
    if changed_into is not None:
        table, column = changed_into
        conn.execute(text(
            f"INSERT INTO {table} ({column}) SELECT DISTINCT COALESCE(h_{column}, n_{column}) FROM merge_pairs "
            f"WHERE NOT EXISTS (SELECT 1 FROM {table} x WHERE x.{column} = COALESCE(h_{column}, n_{column}))"
        ))
    conn.execute(text(
        f"CREATE TEMPORARY TABLE merge_departed AS SELECT {', '.join(f'h_{c} AS {c}' for c in history.columns)}, "
        f"h_valid_from AS valid_from, h_valid_to AS valid_to FROM merge_pairs WHERE h_{history.ids[0]} IS NOT NULL"
    ))
    conn.execute(text(
        f"CREATE TEMPORARY TABLE merge_arrived AS SELECT {', '.join(f'n_{c} AS {c}' for c in history.columns)} "
        f"FROM merge_pairs WHERE n_{history.ids[0]} IS NOT NULL"
    ))
    if dialect == "postgresql":  # their sizes decide the plans below (a quiet night: a few rows)
        conn.execute(text("ANALYZE merge_departed, merge_arrived"))
    run = " AND ".join(f"x.{c} = {t}.{c}" for c in history.ids) + f" AND x.valid_from = {t}.valid_from"
    departed = f"EXISTS (SELECT 1 FROM merge_departed x WHERE {run})"
    written = 0
    # 1. Departures: the key leaves on ``day``; it comes back from the next merged date if its
    #    interval reached that far, and keeps [valid_from, day) if it started before.
    if nxt is not None:
        written += conn.execute(text(
            f"INSERT INTO {t} ({cols}, valid_from, valid_to) SELECT {cols}, {n}, valid_to FROM merge_departed "
            "WHERE valid_to IS NULL OR valid_to > :n"
        ), p).rowcount
    written += conn.execute(text(f"DELETE FROM {t} WHERE valid_from = :d AND {departed}"), p).rowcount
    written += conn.execute(text(f"UPDATE {t} SET valid_to = :d WHERE valid_from < :d AND {departed}"), p).rowcount
    # 2. Arrivals: [day, next merged date), then joined to the runs of the same key that end at
    #    ``day`` or start at the next merged date.
    written += conn.execute(text(
        f"INSERT INTO {t} ({cols}, valid_from, valid_to) SELECT {cols}, {_date_param('d', dialect)}, {n} "
        "FROM merge_arrived"
    ), p).rowcount
    for name in ("merge_pairs", "merge_departed", "merge_arrived"):
        conn.execute(text(f"DROP TABLE {name}"))
    if dialect == "postgresql" and written > ANALYZE_AFTER:
        # The runs just opened and closed are new values of valid_from / valid_to: without
        # fresh statistics the joins below take them for one row and loop over each other. All
        # columns: analysing only those two halved this at 1M agents, but a table first filled
        # by a merge then had no statistics on its keys (the benchmark's diff took 2.7 s, not 1).
        conn.execute(text(f"ANALYZE {t}"))
    written += _coalesce_at(conn, history, day)
    if nxt is not None:
        written += _coalesce_at(conn, history, nxt)
    return written


def _date_param(name: str, dialect: str) -> str:
    """A date parameter in a SELECT list (PostgreSQL cannot infer its type there, NULL or not)."""
    return f":{name}" if dialect == "sqlite" else f"CAST(:{name} AS DATE)"


def forget_date(conn: Connection, history: History, day: date) -> int:
    """Remove ``day`` from ``history`` (call ``forget_merged`` after the last history); only
    the runs that start or end on it change. Serialised like ``set_date``."""
    _, nxt = neighbours(conn, day)
    p = {"d": day, "n": nxt}
    t = history.table
    only_day = "" if nxt is None else " AND valid_to IS NOT NULL AND valid_to <= :n"
    written = conn.execute(text(f"DELETE FROM {t} WHERE valid_from = :d{only_day}"), p).rowcount
    if nxt is not None:
        written += conn.execute(text(f"UPDATE {t} SET valid_from = :n WHERE valid_from = :d"), p).rowcount
    written += conn.execute(text(f"UPDATE {t} SET valid_to = :n WHERE valid_to = :d"), p).rowcount
    if nxt is not None:
        written += _coalesce_at(conn, history, nxt)
    return written


def forget_merged(conn: Connection, day: date) -> None:
    conn.execute(text("DELETE FROM history_dates WHERE snapshot_date = :d"), {"d": day})


def _coalesce_at(conn: Connection, history: History, boundary: date) -> int:
    """Join a run that ends at ``boundary`` to the run of the same key that starts there: the
    left run takes the right one's end, then the right one (now inside it) goes."""
    t, dialect = history.table, conn.dialect.name
    right = f"SELECT r.valid_to FROM {t} r WHERE r.valid_from = :b AND {history.same_key('r', t, dialect)}"
    written = conn.execute(
        text(f"UPDATE {t} SET valid_to = ({right}) WHERE valid_to = :b AND EXISTS ({right})"), {"b": boundary}
    ).rowcount
    if written:
        same_end = null_safe_equals(dialect)
        left = (f"SELECT 1 FROM {t} l WHERE l.valid_from < :b AND {history.same_key('l', t, dialect)} "
                f"AND l.valid_to {same_end} {t}.valid_to")
        written += conn.execute(
            text(f"DELETE FROM {t} WHERE valid_from = :b AND EXISTS ({left})"), {"b": boundary}
        ).rowcount
    return written
