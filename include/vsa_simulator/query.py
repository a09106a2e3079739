"""Run ``$filter`` + ``$orderby`` over a :class:`Table`, cheaply on large agent tables.

An ``Id eq ...M`` term is answered from the table's index, so a ``$top=1`` count of a machine
group never scans a million agents; ``$orderby=AgentName`` is the table's natural order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vsa_simulator.model import Table
from vsa_simulator.odata import parse_filter, parse_orderby


def _sort_key(value: Any) -> tuple[bool, Any]:
    # Nulls first, as SQL Server sorts them; strings case-insensitively.
    return (value is not None, value.casefold() if isinstance(value, str) else value)


def select(table: Table, filter_text: str = "", orderby_text: str = "") -> Sequence[int]:
    """The handles matching ``filter_text``, in ``orderby_text`` order (natural order if empty).

    Raises :class:`~vsa_simulator.odata.ODataError` for a query VSA would refuse.
    """
    flt = parse_filter(filter_text, table.schema) if filter_text.strip() else None
    order = parse_orderby(orderby_text, table.schema) if orderby_text.strip() else []
    rows: Sequence[int] = table.handles
    if flt is not None:
        candidates = None
        for field, key in flt.equalities():
            candidates = table.lookup(field, key)
            if candidates is not None:
                break
        keep = flt.predicate(table.getter)
        rows = [h for h in (rows if candidates is None else candidates) if keep(h)]
    if not order or order == [(table.presorted, False)]:
        return rows
    if order == [(table.presorted, True)]:
        return rows[::-1]
    result = list(rows)
    for field, descending in reversed(order):  # stable sorts, last key first
        get = table.getter(field)
        result.sort(key=lambda h: _sort_key(get(h)), reverse=descending)  # noqa: B023 - used at once
    return result
