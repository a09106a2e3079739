"""``$filter`` and ``$orderby`` as VSA's OData layer understands them (reference §3).

Grammar: ``eq ne gt ge lt le``, ``and or not``, parentheses, ``startswith(F,'x')``,
``endswith(F,'x')``, ``substringof('x',F)``, ``tolower``/``toupper``, literals ``'text'``
(``''`` escapes a quote), integers (Edm.Int32), decimals with the ``M`` suffix, ``null``,
``true``/``false`` and ``datetime'2024-01-31T00:00:00'``.

Like the real server: an integer literal beyond Int32 without ``M`` is an HTTP 400
("Unrecognized 'Edm.Int32' literal ..."), as are syntax errors, unknown properties and
mismatched types; a known field that is not Filterable/Sortable is answered HTTP 200 with
``ResponseCode`` 400 (an error inside the envelope). Decimals are compared exactly
(``Decimal``), strings case-insensitively (SQL Server's default collation).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from vsa_simulator.shapes import Schema, iso_utc

Getter = Callable[[int], Any]
_INT32_MAX = 2**31 - 1
_EDM = {"string": "Edm.String", "int": "Edm.Int32", "decimal": "Edm.Decimal",
        "datetime": "Edm.DateTime", "bool": "Edm.Boolean", "null": "null"}
_OPS = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual",
        "lt": "LessThan", "le": "LessThanOrEqual"}
_FUNCS = {"startswith": (("string", "string"), "bool"), "endswith": (("string", "string"), "bool"),
          "substringof": (("string", "string"), "bool"), "tolower": (("string",), "string"),
          "toupper": (("string",), "string")}
_TOKEN = re.compile(
    r"\s*(?:(?P<dt>datetime'[^']*')|(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?[mM]?)"
    r"|(?P<name>[A-Za-z_]\w*)|(?P<punct>[(),]))"
)


class ODataError(Exception):
    """A query option the server rejects; ``http_status`` 200 means "error inside the envelope"."""

    def __init__(self, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status


@dataclass(frozen=True)
class _Node:
    kind: str  # field | lit | call | cmp | and | or | not
    type: str
    value: Any = None  # field name, literal value, function or operator name
    args: tuple[_Node, ...] = ()


def _normalise(type_: str) -> Callable[[Any], Any]:
    """How a field's JSON value compares: decimals exact, strings case-insensitively."""
    if type_ == "decimal":
        return lambda v: None if v is None else Decimal(str(v))
    if type_ == "string":
        return lambda v: None if v is None else str(v).casefold()
    return lambda v: v  # int, bool, and datetime (fixed-width ISO text sorts as time)


class _Parser:
    def __init__(self, text: str, schema: Schema) -> None:
        self.text, self.schema = text, schema
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.lastgroup is None:
                if text[pos:].strip():
                    raise self._syntax(pos)
                break
            self.tokens.append((m.lastgroup, m.group(m.lastgroup), m.start(m.lastgroup)))
            pos = m.end()
        self.i = 0

    def _syntax(self, pos: int) -> ODataError:
        return ODataError(f"Syntax error at position {pos} in '{self.text}'.")

    def _peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _take(self, text: str | None = None) -> tuple[str, str, int]:
        tok = self._peek()
        if tok is None or (text is not None and tok[1] != text):
            raise self._syntax(tok[2] if tok else len(self.text))
        self.i += 1
        return tok

    def _at_word(self, *words: str) -> bool:
        tok = self._peek()
        return tok is not None and tok[0] == "name" and tok[1] in words

    def parse(self) -> _Node:
        node = self._or()
        if self._peek() is not None:
            raise self._syntax(self._peek()[2])  # type: ignore[index]
        return node

    def _or(self) -> _Node:
        node = self._and()
        while self._at_word("or"):
            self._take()
            node = self._logical("or", node, self._and())
        return node

    def _and(self) -> _Node:
        node = self._not()
        while self._at_word("and"):
            self._take()
            node = self._logical("and", node, self._not())
        return node

    def _logical(self, op: str, left: _Node, right: _Node) -> _Node:
        for side in (left, right):
            if side.type != "bool":
                raise ODataError(f"The '{op}' operator requires boolean operands in '{self.text}'.")
        return _Node(op, "bool", op, (left, right))

    def _not(self) -> _Node:
        if self._at_word("not"):
            self._take()
            inner = self._not()
            if inner.type != "bool":
                raise ODataError(f"The 'not' operator requires a boolean operand in '{self.text}'.")
            return _Node("not", "bool", "not", (inner,))
        return self._compare()

    def _compare(self) -> _Node:
        left = self._primary()
        if not self._at_word(*_OPS):
            return left
        op = self._take()[1]
        right = self._primary()
        types = {left.type, right.type}
        numeric = types <= {"int", "decimal"}
        nullable = "null" in types and op in ("eq", "ne")
        if not (len(types) == 1 or numeric or nullable) or (types == {"null"} and op not in ("eq", "ne")):
            raise ODataError(
                "A binary operator with incompatible types was detected. Found operand types "
                f"'{_EDM.get(left.type, left.type)}' and '{_EDM.get(right.type, right.type)}' "
                f"for operator kind '{_OPS[op]}'."
            )
        return _Node("cmp", "bool", op, (left, right))

    def _primary(self) -> _Node:
        kind, text, pos = self._take()
        if kind == "punct" and text == "(":
            node = self._or()
            self._take(")")
            return node
        if kind == "str":
            return _Node("lit", "string", text[1:-1].replace("''", "'").casefold())
        if kind == "dt":
            return self._datetime(text, pos)
        if kind == "num":
            return self._number(text, pos)
        if kind != "name":
            raise self._syntax(pos)
        if text in ("null", "true", "false"):
            return _Node("lit", "null", None) if text == "null" else _Node("lit", "bool", text == "true")
        if self._peek() is not None and self._peek()[1] == "(":  # type: ignore[index]
            return self._call(text, pos)
        return self._field(text)

    def _datetime(self, text: str, pos: int) -> _Node:
        try:
            moment = datetime.fromisoformat(text[9:-1].rstrip("Z"))
        except ValueError:
            raise ODataError(f"Unrecognized 'Edm.DateTime' literal '{text}' at '{pos}' in '{self.text}'.") from None
        return _Node("lit", "datetime", iso_utc(moment.replace(tzinfo=None)))

    def _number(self, text: str, pos: int) -> _Node:
        if text[-1] in "mM":
            return _Node("lit", "decimal", Decimal(text[:-1]))
        if "." in text:
            return _Node("lit", "decimal", Decimal(text))
        value = int(text)
        if abs(value) > _INT32_MAX:
            raise ODataError(f"Unrecognized 'Edm.Int32' literal '{text}' at '{pos}' in '{self.text}'.")
        return _Node("lit", "int", value)

    def _call(self, name: str, pos: int) -> _Node:
        if name not in _FUNCS:
            raise ODataError(f"Unknown function '{name}' at position {pos} in '{self.text}'.")
        arg_types, result = _FUNCS[name]
        self._take("(")
        args = [self._or()]
        while self._peek() is not None and self._peek()[1] == ",":  # type: ignore[index]
            self._take(",")
            args.append(self._or())
        self._take(")")
        if tuple(a.type for a in args) != arg_types:
            raise ODataError(f"No function signature for the function with name '{name}' matches the arguments in '{self.text}'.")
        return _Node("call", result, name, tuple(args))

    def _field(self, name: str) -> _Node:
        type_ = self.schema.types.get(name)
        if type_ is None:
            raise ODataError(f"Could not find a property named '{name}' on type 'Kaseya.{self.schema.entity}'.")
        if name not in self.schema.filterable:
            raise ODataError(f"The field '{name}' is not filterable.", http_status=200)
        return _Node("field", type_, name)


def _compile(node: _Node, getter: Callable[[str], Getter]) -> Getter:
    kind = node.kind
    if kind == "field":
        get, norm = getter(node.value), _normalise(node.type)
        return lambda h: norm(get(h))
    if kind == "lit":
        value = node.value
        return lambda h: value
    args = [_compile(a, getter) for a in node.args]
    if kind == "and":
        a, b = args
        return lambda h: a(h) and b(h)
    if kind == "or":
        a, b = args
        return lambda h: a(h) or b(h)
    if kind == "not":
        (a,) = args
        return lambda h: not a(h)
    if kind == "call":
        return _compile_call(node.value, args)
    return _compile_compare(node, args)


def _compile_call(name: str, args: list[Getter]) -> Getter:
    if name in ("tolower", "toupper"):  # comparisons are case-insensitive already
        return args[0]
    a, b = args
    test: Callable[[str, str], bool] = {
        "startswith": str.startswith,
        "endswith": str.endswith,
        "substringof": lambda needle, hay: needle in hay,
    }[name]

    def call(h: int) -> bool:
        x, y = a(h), b(h)
        return x is not None and y is not None and test(x, y)

    return call


def _compile_compare(node: _Node, args: list[Getter]) -> Getter:
    op = node.value
    left, right = node.args
    if right.kind == "lit" and left.kind != "lit":  # the common "Field op literal": no call per row
        get, const = args[0], right.value
        if op == "eq":
            return lambda h: get(h) == const
        if op == "ne":
            return lambda h: get(h) != const
    a, b = args
    if op == "eq":
        return lambda h: a(h) == b(h)
    if op == "ne":
        return lambda h: a(h) != b(h)
    test: Callable[[Any, Any], bool] = {
        "gt": lambda x, y: x > y, "ge": lambda x, y: x >= y,
        "lt": lambda x, y: x < y, "le": lambda x, y: x <= y,
    }[op]

    def compare(h: int) -> bool:
        x, y = a(h), b(h)
        return x is not None and y is not None and test(x, y)

    return compare


@dataclass(frozen=True)
class Filter:
    """A parsed ``$filter``, checked against a collection's schema."""

    root: _Node

    def predicate(self, getter: Callable[[str], Getter]) -> Callable[[int], bool]:
        """A row test over handles, reading fields through ``getter(field)``."""
        return _compile(self.root, getter)

    def equalities(self) -> list[tuple[str, str]]:
        """``(field, id)`` of the top-level ``DecimalField eq literal`` terms: index lookups."""
        found: list[tuple[str, str]] = []
        stack = [self.root]
        while stack:
            node = stack.pop()
            if node.kind == "and":
                stack.extend(node.args)
            elif node.kind == "cmp" and node.value == "eq":
                fields = [a for a in node.args if a.kind == "field" and a.type == "decimal"]
                lits = [a for a in node.args if a.kind == "lit" and a.type in ("decimal", "int")]
                if fields and lits and Decimal(lits[0].value) == int(lits[0].value):
                    found.append((fields[0].value, str(int(lits[0].value))))
        return found


def parse_filter(text: str, schema: Schema) -> Filter:
    root = _Parser(text, schema).parse()
    if root.type != "bool":
        raise ODataError(f"The $filter expression must evaluate to a single boolean value: '{text}'.")
    return Filter(root)


def parse_orderby(text: str, schema: Schema) -> list[tuple[str, bool]]:
    """``[(field, descending), ...]`` from ``F1 asc, F2 desc``."""
    order: list[tuple[str, bool]] = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise ODataError(f"Syntax error in $orderby '{text}'.")
        name = words[0]
        if name not in schema.types:
            raise ODataError(f"Could not find a property named '{name}' on type 'Kaseya.{schema.entity}'.")
        if name not in schema.sortable:
            raise ODataError(f"The field '{name}' is not sortable.", http_status=200)
        order.append((name, len(words) == 2 and words[1].lower() == "desc"))
    return order
