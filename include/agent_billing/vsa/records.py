"""Decoding VSA response bodies: exact ids, and each record's own JSON text for the raw landing.

Org and machine-group ids have up to 26 digits and arrive as JSON strings or numbers
(reference §4.7). Integers are decoded exactly by :mod:`json`; non-integers are decoded as
:class:`~decimal.Decimal` so that nothing ever passes through a float. Id fields are then
normalised to decimal strings.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

#: Fields normalised to exact decimal strings (None stays None; "" becomes None).
ID_FIELDS = (
    "AgentId",
    "OrgId",
    "MachineGroupId",
    "ParentMachineGroupId",
    "ParentOrgId",
    "ViewDefId",
)

_DECODER = json.JSONDecoder(parse_int=int, parse_float=Decimal)
_WS = re.compile(r"[ \t\n\r]*")


class VsaRecord(dict[str, Any]):
    """One record: a ``dict`` of its fields with ids normalised, plus ``raw``.

    ``raw`` is the exact JSON text the server sent for this record (ids untouched), for the
    immutable raw landing; the dict is what the loaders read.
    """

    __slots__ = ("raw",)

    def __init__(self, fields: dict[str, Any], raw: str) -> None:
        super().__init__(fields)
        self.raw = raw


def normalise_id(value: Any) -> str | None:
    """An id as an exact decimal string, whether the JSON held a string or a number."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"not an id: {value!r}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if value != value.to_integral_value():
            raise ValueError(f"not an integral id: {value}")
        return format(value.to_integral_value(), "f")
    if not isinstance(value, str):  # a list or an object where an id belongs
        raise ValueError(f"not an id: {value!r}")
    text = value.strip()
    return text or None


#: VSA ids are decimal strings of up to 26 digits (SPEC 3).
VSA_ID_MAX_DIGITS = 26


def make_record(fields: dict[str, Any], raw: str) -> VsaRecord:
    """A record of VSA's answer, its ids exact decimal strings. An id of another shape is
    refused here, at the API's edge (the answer is malformed: nothing of it is landed), so that
    no night stores it and no unit change or customer mail names it."""
    for name in ID_FIELDS:
        if name in fields:
            value = fields[name]
            if value.__class__ is str and value.isdigit() and value.isascii() and len(value) <= VSA_ID_MAX_DIGITS:
                continue  # VSA's usual id, as it stands (a million times a night: two C calls)
            try:
                value = fields[name] = normalise_id(value)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
            if value is not None and not (len(value) <= VSA_ID_MAX_DIGITS and value.isascii() and value.isdigit()):
                raise ValueError(f"{name}: {value!r} is not a VSA id (decimal digits, at most {VSA_ID_MAX_DIGITS})")
    return VsaRecord(fields, raw)


def parse_envelope(text: str) -> dict[str, Any]:
    """Decode a response envelope; ``Result`` objects become :class:`VsaRecord` s.

    Raises :class:`ValueError` (``json.JSONDecodeError``) for anything that is not one JSON
    object. The top level is walked by hand so that each record's source text can be kept
    without decoding the body twice.
    """
    i = _skip(text, 0)
    if not text.startswith("{", i):
        raise json.JSONDecodeError("expected a JSON object", text, i)
    envelope: dict[str, Any] = {}
    i = _skip(text, i + 1)
    if text.startswith("}", i):
        return _end(text, i + 1, envelope)
    while True:
        key, i = _DECODER.raw_decode(text, i)
        if not isinstance(key, str):
            raise json.JSONDecodeError("expected a property name", text, i)
        i = _skip(text, i)
        if not text.startswith(":", i):
            raise json.JSONDecodeError("expected ':'", text, i)
        i = _skip(text, i + 1)
        if key == "Result":
            envelope[key], i = _decode_result(text, i)
        else:
            envelope[key], i = _DECODER.raw_decode(text, i)
        i = _skip(text, i)
        if text.startswith(",", i):
            i = _skip(text, i + 1)
        elif text.startswith("}", i):
            return _end(text, i + 1, envelope)
        else:
            raise json.JSONDecodeError("expected ',' or '}'", text, i)


def _decode_result(text: str, i: int) -> tuple[Any, int]:
    if text.startswith("{", i):
        return _decode_record(text, i)
    if not text.startswith("[", i):
        return _DECODER.raw_decode(text, i)
    records: list[VsaRecord] = []
    i = _skip(text, i + 1)
    if text.startswith("]", i):
        return records, i + 1
    while True:
        record, i = _decode_record(text, i)
        records.append(record)
        i = _skip(text, i)
        if text.startswith(",", i):
            i = _skip(text, i + 1)
        elif text.startswith("]", i):
            return records, i + 1
        else:
            raise json.JSONDecodeError("expected ',' or ']'", text, i)


def _decode_record(text: str, start: int) -> tuple[VsaRecord, int]:
    fields, end = _DECODER.raw_decode(text, start)
    if not isinstance(fields, dict):
        raise json.JSONDecodeError("expected a record object", text, start)
    try:
        return make_record(fields, text[start:end]), end
    except ValueError as exc:
        raise json.JSONDecodeError(str(exc), text, start) from None


def _skip(text: str, i: int) -> int:
    match = _WS.match(text, i)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _end(text: str, i: int, envelope: dict[str, Any]) -> dict[str, Any]:
    i = _skip(text, i)
    if i != len(text):
        raise json.JSONDecodeError("extra data after the JSON object", text, i)
    return envelope
