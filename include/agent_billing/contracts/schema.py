"""The contracts file: YAML with line numbers, pydantic models with the rules and limits.

``load_contracts_file`` validates a file whole; every problem is reported on one line as
``FILE:LINE: accounts[0] (ACME) > contracts[0] (C-ACME) > end_date: why``. The YAML loader
records the line of every mapping and key (``LinedDict``), reads floats as exact ``Decimal``
and keeps a date YAML cannot build (``2024-02-30``) as text, so that validation reports it
with its entry and line instead of failing inside the loader.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agent_billing.billing.money import AMOUNT_MAX
from agent_billing.contracts.limits import (
    ID_MAX_LENGTH,
    NAME_MAX_LENGTH,
    NOTIFY_EMAILS_MAX,
    OFFLINE_DAYS_MAX,
    UNIT_PRICE_DECIMALS,
    UNIT_PRICE_MAX,
    VSA_ID_MAX_DIGITS,
)
from agent_billing.currencies import is_active_currency
from agent_billing.errors import UserError
from agent_billing.sync.dates import DATE_RANGE, LATEST, within_range

LOCKED_FIELDS = (
    "units_source",
    "vsa_machine_group_id",
    "include_subgroups",
    "vsa_view_id",
    "exclude_never_checked_in",
    "exclude_offline_days",
)


class ContractsFileError(UserError):
    """The contracts file is invalid or would change something locked; nothing was written."""


# --- field types ---------------------------------------------------------------------------


def _exact_id(value: Any) -> Any:
    """VSA ids are decimal strings; an unquoted YAML integer is exact, a float is not."""
    if isinstance(value, bool) or isinstance(value, float | Decimal):
        raise ValueError("VSA ids must be quoted strings of digits (a number loses digits)")
    if isinstance(value, int):
        return str(value)
    return value


def _exact_price(value: Any) -> Any:
    if isinstance(value, float):  # only reachable when called without the Decimal YAML loader
        raise ValueError("unit_price must be a string or an exact decimal, not a binary float")
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is not a price")
    if isinstance(value, str) and not value.isascii():  # Decimal reads any script's digits: "１２" as 12
        raise ValueError(f"{value!r} is not a price: write it with the digits 0-9")
    if isinstance(value, str) and not _PRICE_TEXT.fullmatch(value.strip()):  # 12,50  $12.50  1,250.00  1e3
        raise ValueError(f"{value!r} is not a price: write digits with a dot before the decimals, without a "
                         "currency sign, spaces or thousands separators (\"12.50\")")
    return value


_PRICE_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _vsa_digits(value: str) -> str:
    if not re.fullmatch(rf"[0-9]{{1,{VSA_ID_MAX_DIGITS}}}", value):
        raise ValueError(f"{value!r} is not a VSA id: decimal digits only, at most {VSA_ID_MAX_DIGITS}, "
                         "without spaces (copy it from VSA)")
    return value


def _no_bool(value: Any) -> Any:
    """YAML's true/yes/on would be the number 1 (a unit, a day of offline cutoff, the 1st): a
    yes/no where a number belongs is refused (a price of true is refused too)."""
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is a yes/no, not a number")
    return value


def _price_limits(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError(f"{value} is not a price")
    if not 0 <= value <= UNIT_PRICE_MAX:
        raise ValueError(f"{_shown(value)} is outside 0 … {UNIT_PRICE_MAX:,f}")
    if _decimals(value) > UNIT_PRICE_DECIMALS:
        raise ValueError(f"{_shown(value)} has more than {UNIT_PRICE_DECIMALS} decimals")
    return value


def _decimals(value: Decimal) -> int:
    """Decimal places of ``value`` as written, less trailing zeros (exact: ``normalize`` would
    round a long value to the context's 28 digits first)."""
    if value.is_zero():
        return 0
    _, digits, exponent = value.as_tuple()
    written = "".join(map(str, digits))
    return max(0, -(exponent + len(written) - len(written.rstrip("0"))))


def _shown(value: Decimal) -> str:
    """``value`` for a message: plain digits, or as written when they would be too many
    (``1e999999999`` must not become a billion characters)."""
    return f"{value:f}" if abs(value.adjusted()) <= 30 and value.as_tuple().exponent >= -30 else str(value)


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _calendar_date(value: Any) -> Any:
    """A date written YYYY-MM-DD (quoted or not) within the dates a user may give (a typo such
    as 0001-01-01 would bill every month since year 1); never a timestamp, number or time of
    day."""
    if isinstance(value, datetime):
        raise ValueError(f"{value} has a time of day; write the date only (YYYY-MM-DD)")
    if value is None:
        return value
    if isinstance(value, str):
        if not _ISO_DATE.fullmatch(value.strip()):
            raise ValueError(f"{value!r} is not a date; write YYYY-MM-DD")
        try:
            value = date.fromisoformat(value.strip())
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a valid date (YYYY-MM-DD): {exc}") from None
    if not isinstance(value, date):
        raise ValueError(f"{value!r} is not a date; write YYYY-MM-DD")
    if not within_range(value):
        no_end = "; for no end, leave end_date out (null)" if value > LATEST else ""
        raise ValueError(f"{value}: {DATE_RANGE}{no_end}")
    return value


def _quoted_text(value: Any) -> Any:
    """Ids and names are text: ``account_id: 4711`` is read by YAML as a number."""
    if isinstance(value, bool):  # YAML's yes/no/on/off/true/false, any case: what was written is gone
        raise ValueError("a yes/no word (yes, no, on, off, true, false) is read as a bool, not text: quote it "
                         "as you wrote it (\"NO\")")
    if isinstance(value, bool | int | float | Decimal | date):
        written = getattr(value, "written", value)
        kind = "int" if isinstance(value, int) else type(value).__name__
        if kind != "int":  # YAML rewrote it (.5 as 0.5): what was written is not known
            raise ValueError(f"{written} is read as a {kind}, not text: quote it as you wrote it")
        raise ValueError(f"{written} is read as a {kind}, not text: quote it (\"{written}\")")
    return value


def _text(max_length: int, *, key: bool = False) -> AfterValidator:
    """Text of at most ``max_length`` characters, none of them a control character or an
    invisible one (a zero-width space pasted from a web page made ``S-WS\u200b`` a second
    service that prints like ``S-WS``, billed beside it): ``_invisible``, stricter for a
    ``key`` (an id) than for a name."""

    def bounded(value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        if len(value) > max_length:
            raise ValueError(f"{len(value)} characters, at most {max_length} allowed")
        if bad := next((c for c in value if _invisible(c, key)), None):
            raise ValueError(
                f"{value!r} holds a control character or an invisible one (U+{ord(bad):04X} "
                f"{unicodedata.name(bad, 'unnamed')}): retype it"
            )
        return value

    return AfterValidator(bounded)


#: Characters that show nothing and change no letter: a zero-width space, word joiner, BOM, and
#: the bidirectional embeddings, overrides and isolates (which reorder what an invoice shows).
_INVISIBLE = frozenset("\u200b\u2060\ufeff") | frozenset(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))


def _invisible(c: str, key: bool) -> bool:
    """In an id, any control, format, unassigned or private character, and any space but the
    plain one. In a name only controls, line separators and ``_INVISIBLE``: a name's other
    format characters are spelling (the zero-width non-joiner of Persian, the joiner of Indic
    scripts and of emoji sequences) and must be kept."""
    category = unicodedata.category(c)
    if category == "Cc" or category in ("Zl", "Zp") or c in _INVISIBLE:
        return True
    return key and (category[0] == "C" or (category == "Zs" and c != " "))


VsaId = Annotated[str, BeforeValidator(_exact_id), AfterValidator(_vsa_digits)]
Price = Annotated[Decimal, BeforeValidator(_exact_price), AfterValidator(_price_limits)]
CalendarDate = Annotated[date, BeforeValidator(_calendar_date)]
Id = Annotated[str, BeforeValidator(_quoted_text), _text(ID_MAX_LENGTH, key=True)]
Name = Annotated[str, BeforeValidator(_quoted_text), _text(NAME_MAX_LENGTH)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _end_after_start(end: date | None, info: ValidationInfo) -> date | None:
    start = info.data.get("start_date")
    if end is not None and start is not None and end < start:
        raise ValueError(f"end_date {end} is before start_date {start}")
    return end


class ServiceSpec(_Strict):
    service_id: Id
    name: Name
    unit_price: Price
    units_source: Literal["manual", "rmm_agent_count"]
    vsa_machine_group_id: VsaId | None = None
    include_subgroups: bool = True
    vsa_view_id: VsaId | None = None
    exclude_never_checked_in: bool = False
    exclude_offline_days: Annotated[int, BeforeValidator(_no_bool)] | None = Field(None, ge=1, le=OFFLINE_DAYS_MAX)
    units: Annotated[int, BeforeValidator(_no_bool)] | None = Field(None, ge=0, le=2_147_483_647)
    units_effective_date: CalendarDate | None = None
    start_date: CalendarDate
    end_date: CalendarDate | None = None

    _end = field_validator("end_date")(_end_after_start)

    @model_validator(mode="after")
    def _consistent(self) -> ServiceSpec:
        if self.units_source == "manual":
            if self.units is None:
                raise ValueError("a manual service needs 'units'")
            if self.units_effective_date is not None and self.units_effective_date < self.start_date:
                raise ValueError(
                    f"units_effective_date {self.units_effective_date} is before the service starts "
                    f"({self.start_date}); a manual unit change takes effect within the service's dates"
                )
            if self.units * self.unit_price > AMOUNT_MAX:
                raise ValueError(
                    f"units × unit_price = {self.units * self.unit_price:,f} is more than an invoice "
                    f"line can hold ({AMOUNT_MAX:,f})"
                )
            scope = [f for f in LOCKED_FIELDS[1:] if f != "include_subgroups" and getattr(self, f)]
            if scope:
                raise ValueError(f"a manual service has no unit scope; remove {', '.join(scope)}")
        else:
            if self.units is not None:
                raise ValueError("'units' of an rmm_agent_count service come from VSA; remove it")
            if self.units_effective_date is not None:
                raise ValueError("units_effective_date is for manual services only; remove it")
        return self


class ContractSpec(_Strict):
    contract_id: Id
    currency: str
    billing_day: Annotated[int, BeforeValidator(_no_bool)] = Field(1, ge=1, le=28)
    posting: Literal["automatic", "review"] = "automatic"
    start_date: CalendarDate
    end_date: CalendarDate | None = None
    notify_emails: list[EmailStr] = Field([], max_length=NOTIFY_EMAILS_MAX)
    services: list[ServiceSpec] = []

    _end = field_validator("end_date")(_end_after_start)

    @model_validator(mode="after")
    def _services_within(self) -> ContractSpec:
        """A service that starts after its contract ends, or ends before it starts, would never
        bill: a mistake."""
        for service in self.services:
            if self.end_date is not None and service.start_date > self.end_date:
                raise ValueError(
                    f"service {service.service_id} starts on {service.start_date}, after the contract "
                    f"ends ({self.end_date}): it would never be billed"
                )
            if service.end_date is not None and service.end_date < self.start_date:
                raise ValueError(
                    f"service {service.service_id} ends on {service.end_date}, before the contract "
                    f"starts ({self.start_date}): it would never be billed"
                )
        return self

    @field_validator("currency")
    @classmethod
    def _iso_4217(cls, code: str) -> str:
        if not is_active_currency(code):
            raise ValueError(f"{code!r} is not an active ISO 4217 currency code (e.g. USD, EUR, JPY)")
        return code


class AccountSpec(_Strict):
    account_id: Id
    name: Name
    vsa_org_id: VsaId | None = None
    contracts: list[ContractSpec] = []

    @model_validator(mode="after")
    def _rmm_needs_org(self) -> AccountSpec:
        for contract in self.contracts:
            for service in contract.services:
                if service.units_source == "rmm_agent_count" and not self.vsa_org_id:
                    raise ValueError(
                        f"service {service.service_id} counts RMM agents but the account has no vsa_org_id"
                    )
        return self


class ContractsFile(_Strict):
    accounts: list[AccountSpec]


# --- YAML with line numbers -----------------------------------------------------------------


class LinedDict(dict):
    """A YAML mapping that remembers its own line and the line of each key (1-based)."""

    line: int | None = None
    key_lines: dict[Any, int]

    def line_of(self, key: Any) -> int | None:
        return getattr(self, "key_lines", {}).get(key, self.line)


class _ContractsLoader(yaml.SafeLoader):
    """Safe YAML: mappings remember lines, floats are exact, duplicate keys are refused."""


def _mapping(loader: _ContractsLoader, node: yaml.MappingNode) -> LinedDict:
    loader.flatten_mapping(node)
    mapping = LinedDict()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str | int | Decimal | date | bool) and key is not None:  # e.g. `? [a, b]`
            raise ContractsFileError(f"{line}: a key must be a field name, not a {type(key).__name__}")
        if key in mapping:
            raise ContractsFileError(f"{line}: {key!r} appears twice in the same entry")
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = line
        if key == "name":
            _refuse_comment_after_name(value_node, mapping[key])
    return mapping


def _refuse_comment_after_name(node: yaml.Node, name: Any) -> None:
    """``name: Backup #2 offsite`` is the name ``Backup`` and a comment to YAML: the rest would be
    lost from every invoice line without a word. A comment written as one (``# text``, with a
    space after the hash) is left alone; ``#2`` or ``#offsite`` reads as part of the name."""
    end = node.end_mark
    if not isinstance(node, yaml.ScalarNode) or node.style is not None or end.buffer is None:
        return
    rest = end.buffer[end.pointer:].split("\n", 1)[0].strip()
    if rest.startswith("#") and rest[1:2].strip():
        raise ContractsFileError(
            f"{end.line + 1}: YAML reads this name as {name!r} and {rest!r} as a comment: if it is part "
            f"of the name, quote the whole name (name: \"{name} {rest}\"); a comment goes on a line of its own"
        )


def _decimal(loader: _ContractsLoader, node: yaml.ScalarNode) -> Decimal | str:
    raw = loader.construct_scalar(node)
    try:
        return Decimal(raw.replace("_", ""))
    except InvalidOperation:  # .inf, .nan: left as text for validation to refuse
        return raw


class _WrittenInt(int):
    """A YAML integer that remembers how it was written (``00123``): where text was meant, the
    message quotes what the user wrote, not the number (quoting "123" would lose the zeros)."""

    def __new__(cls, written: str) -> _WrittenInt:
        number = super().__new__(cls, int(written.replace("_", ""), 10))
        number.written = written
        return number


def _int(loader: _ContractsLoader, node: yaml.ScalarNode) -> int:
    """A decimal integer, leading zeros and all (``010`` is 10, as in YAML 1.2 and as ``08``
    always was). YAML 1.1 would read ``010`` as octal 8, ``0x10`` as 16, ``0b10`` as 2 and
    ``1:30`` as base 60 (90): a zero-padded number from a spreadsheet would change silently.
    The hex, binary and base-60 forms are refused, naming the line."""
    raw = loader.construct_scalar(node)
    digits = raw.replace("_", "").lstrip("+-")
    if digits.isdigit() and digits.isascii():
        return _WrittenInt(raw)
    raise ContractsFileError(
        f"{node.start_mark.line + 1}: {raw} is not a decimal number (YAML reads 0x as hex, 0b as "
        "binary and a:b as base 60): write it in decimal, or quote it"
    )


def _timestamp(loader: _ContractsLoader, node: yaml.ScalarNode) -> Any:
    try:
        return loader.construct_yaml_timestamp(node)
    except ValueError:  # 2024-02-30 looks like a date but is none: validation names it
        return loader.construct_scalar(node)


_ContractsLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_ContractsLoader.add_constructor("tag:yaml.org,2002:float", _decimal)
_ContractsLoader.add_constructor("tag:yaml.org,2002:int", _int)
_ContractsLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)


# --- loading and error reporting ------------------------------------------------------------


@dataclass(frozen=True)
class ContractsDocument:
    """A validated contracts file and the line of each entry in it."""

    spec: ContractsFile
    source: str = "contracts"
    lines: dict[tuple[str, str], int] = field(default_factory=dict)


def load_contracts_file(path: str | Path) -> ContractsFile:
    """Parse and validate a contracts file (see ``read_contracts_file``)."""
    return read_contracts_file(path).spec


#: What to do about YAML's most common complaints, in the words of a person editing the file.
_YAML_HINTS = (
    ("mapping values are not allowed here", ": a value holding ': ' must be quoted (name: \"Backup: offsite\")"),
    ("cannot start any token", ": indent with spaces, not tabs (a value starting with @ or ` must be quoted)"),
)


SAVE_AS_UTF8 = "save it as UTF-8 (Excel: Save As, CSV UTF-8 or text; Notepad: Save As, Encoding UTF-8)"


def read_contracts_file(path: str | Path) -> ContractsDocument:
    """Parse and validate a contracts file whole; raise ``ContractsFileError`` (one line,
    naming the file, line, entry and field of every problem) when anything is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ContractsFileError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        # with a byte-order mark, or without one: every other byte of its ASCII text is a NUL
        utf16 = exc.object[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in exc.object[: exc.start]
        raise ContractsFileError(
            f"{path}:{line}: the file is {'UTF-16' if utf16 else 'not UTF-8'} (byte {exc.start + 1}); {SAVE_AS_UTF8}"
        ) from None
    except OSError as exc:
        raise ContractsFileError(f"{path}: cannot read the file: {exc}") from None
    try:
        raw = yaml.load(text, Loader=_ContractsLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{mark.line + 1}: YAML syntax error at column {mark.column + 1}" if mark else " YAML syntax error"
        context = exc.context_mark
        started = (f" ({exc.context} on line {context.line + 1})"
                   if exc.context and context and mark and context.line != mark.line else "")
        hint = next((h for problem, h in _YAML_HINTS if problem in (exc.problem or "")), "")
        raise ContractsFileError(f"{path}:{where}: {exc.problem}{started}{hint}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML never takes (an end-of-file byte, a NUL)
        raise ContractsFileError(f"{path}:{_unreadable_character(text, exc)}") from None
    except ContractsFileError as exc:  # a key twice in one mapping, a number YAML would misread: "LINE: why"
        raise ContractsFileError(f"{path}:{exc}") from None
    return ContractsDocument(parse_contracts(raw, source=str(path)), str(path), entry_lines(raw))


def _unreadable_character(text: str, exc: yaml.reader.ReaderError) -> str:
    """``LINE: why`` for a character no YAML file may hold (YAML names only its position)."""
    line = text.count("\n", 0, max(exc.position, 0)) + 1
    code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
    name = unicodedata.name(chr(code), "a control character")
    if code == 0 and text[:200].count("\0") * 3 >= len(text[:200]):  # every other byte NUL: UTF-16, no BOM
        return f"{line}: the file is UTF-16 (a NUL character); {SAVE_AS_UTF8}"
    return f"{line}: the character U+{code:04X} ({name}) cannot be in a YAML file: remove it"


def parse_contracts(raw: Any, source: str = "contracts") -> ContractsFile:
    """Validate a parsed document (a ``LinedDict`` from the loader, or any mapping)."""
    if not isinstance(raw, Mapping):
        raise ContractsFileError(f"{source}: expected a mapping with an 'accounts' list")
    try:
        spec = ContractsFile.model_validate(raw)
    except ValidationError as exc:
        problems = [_problem(source, raw, err["loc"], err["msg"]) for err in exc.errors()]
        raise ContractsFileError(_one_line(problems)) from None
    duplicates = _duplicate_ids(source, raw)
    if duplicates:
        raise ContractsFileError(_one_line(duplicates))
    return spec


def _one_line(problems: list[str]) -> str:
    return "; ".join(problems) + ". Nothing was applied."


def _problem(source: str, raw: Any, loc: tuple, msg: str) -> str:
    path, line = describe(raw, loc)
    msg = msg.removeprefix("Value error, ")
    return f"{source}{f':{line}' if line else ''}: {path}: {msg}"


def describe(raw: Any, loc: tuple) -> tuple[str, int | None]:
    """``accounts[0] (CONTOSO) > services[1] (S-X) > field`` and the line it is on."""
    parts: list[str] = []
    node, line = raw, getattr(raw, "line", None)
    for key in loc:
        if isinstance(key, int) and isinstance(node, list) and key < len(node):
            node = node[key]
            ident = _ident(node)
            if parts:
                parts[-1] += f"[{key}]" + (f" ({ident})" if ident else "")
            line = getattr(node, "line", line)
        elif isinstance(node, Mapping) and key in node:
            parts.append(str(key))
            line = node.line_of(key) if isinstance(node, LinedDict) else line
            node = node[key]
        else:
            parts.append(str(key))
            node = None
    return " > ".join(parts) or "file", line


def _ident(node: Any) -> Any:
    if not isinstance(node, Mapping):
        return None
    return next((node[k] for k in ("service_id", "contract_id", "account_id") if node.get(k)), None)


def _duplicate_ids(source: str, raw: Mapping) -> list[str]:
    """Each account, contract and service id appears once in the file."""
    seen: dict[tuple[str, Any], int | None] = {}
    problems = []
    for account in raw.get("accounts") or []:
        entries = [("account_id", account)]
        for contract in account.get("contracts") or []:
            entries.append(("contract_id", contract))
            entries += [("service_id", s) for s in contract.get("services") or []]
        for kind, entry in entries:
            key = (kind, _as_id(entry[kind]))
            line = entry.line_of(kind) if isinstance(entry, LinedDict) else None
            if key in seen:
                first = f" (first on line {seen[key]})" if seen[key] else ""
                problems.append(f"{source}{f':{line}' if line else ''}: duplicate {kind} {key[1]}{first}")
            else:
                seen[key] = line
    return problems


def _as_id(value: Any) -> str:
    """An id as the validated file holds it (``str_strip_whitespace``): ``"S1 "`` is ``S1``."""
    return str(value).strip()


def entry_lines(raw: Any) -> dict[tuple[str, str], int]:
    """(kind, id) → line of each account, contract and service entry in the file."""
    lines: dict[tuple[str, str], int] = {}
    if not isinstance(raw, Mapping):
        return lines

    def note(kind: str, entry: Any) -> None:
        if isinstance(entry, LinedDict) and entry.line:
            lines[(kind, _as_id(entry.get(f"{kind}_id")))] = entry.line

    for account in raw.get("accounts") or []:
        note("account", account)
        for contract in account.get("contracts") or []:
            note("contract", contract)
            for service in contract.get("services") or []:
                note("service", service)
    return lines
