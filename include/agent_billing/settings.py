"""Runtime settings read from ``AGENT_BILLING_*`` environment variables (validated by pydantic)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping
from decimal import Decimal
from difflib import get_close_matches
from email.utils import getaddresses
from pathlib import Path
from typing import Literal, TypeVar
from zoneinfo import ZoneInfo

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent_billing.errors import ConfigurationError
from agent_billing.zones import known_timezone

#: One address by its form only: internal domains (``ops@corp.local``) are valid recipients,
#: which a deliverability check (pydantic's EmailStr) would refuse.
_ADDRESS = re.compile(r"[^\s@;,<>]+@[^\s@;,<>]+")


#: The longest ``AGENT_BILLING_LATE_GRACE_HOURS``: a larger value (days typed as hours) would
#: store VSA's present state as a night weeks old, as if on time.
LATE_GRACE_HOURS_MAX = 168

#: ``AGENT_BILLING_*`` names that are no field of ``Settings``: the DAG files' own settings,
#: and the test suite's and benchmarks' (prefixes).
OTHER_NAMES = ("AGENT_BILLING_SYNC_CRON", "AGENT_BILLING_SYNC_DEADLINE")
OTHER_PREFIXES = ("AGENT_BILLING_TEST_", "AGENT_BILLING_BENCH_")


class MailSettings(BaseSettings):
    """The settings mail needs: its sender and the data team. Read on their own when another
    setting is invalid (``mail_settings``), so that the failures that setting causes still
    reach the data team."""

    model_config = SettingsConfigDict(env_prefix="AGENT_BILLING_", extra="ignore")

    notify_from: str = Field("agent-billing@localhost", description="Sender of unit-change mail.")
    data_team_emails: str = Field("", description="Comma-separated recipients of data-team alerts.")

    @field_validator("notify_from")
    @classmethod
    def _sender(cls, value: str) -> str:
        """One address, with or without a display name (``Billing <billing@msp.example>``); empty
        or ``billing`` would fail every delivery with a relay's error."""
        addresses = getaddresses([value.strip()])
        if len(addresses) != 1 or not _ADDRESS.fullmatch(addresses[0][1]):
            raise ValueError("the sender must be one e-mail address, such as billing@msp.example "
                             "or Billing <billing@msp.example>")
        return value.strip()

    @field_validator("data_team_emails")
    @classmethod
    def _addresses(cls, value: str) -> str:
        """Comma-separated addresses, each valid (``a;b`` would be one address that never arrives)."""
        for address in (a.strip() for a in value.split(",")):
            if address and not _ADDRESS.fullmatch(address):
                raise ValueError(f"{address!r} is not one e-mail address (separate several with commas)")
        return value

    @property
    def data_team(self) -> list[str]:
        return [e.strip() for e in self.data_team_emails.split(",") if e.strip()]


class Settings(MailSettings):
    """Every knob of the pipeline; each field is ``AGENT_BILLING_<NAME>`` in the environment."""

    timezone: str = Field("UTC", description="Billing timezone: snapshot dates are local dates here.")
    late_observation: Literal["refuse", "allow"] = Field(
        "refuse", description="allow: take VSA's present state as an old date's (SPEC 4.6)."
    )
    late_grace_hours: int = Field(
        36, ge=0, le=LATE_GRACE_HOURS_MAX, description="How old a date may be before it needs a landing "
        "(hours, at most a week: VSA's present state is never an older night's)."
    )
    raw_path: Path = Field(Path("./data/raw"), description="Where raw VSA extracts are landed.")
    quarantine_share: Decimal = Field(Decimal("0.20"), ge=0, le=1)
    quarantine_min_agents: int = Field(5, ge=0)
    snapshot_retention_days: int = Field(
        7, ge=0, le=36_500, description="Days of per-date snapshot staging kept before the latest night (history is kept as intervals)."
    )
    extra_online_codes: str = Field(
        "", description="Comma-separated Online status codes beyond VSA's documented ones (a newer "
        "build's) that the quality gate accepts."
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        return known_timezone(value)

    @field_validator("raw_path", mode="before")
    @classmethod
    def _a_path(cls, value: object) -> object:
        """An empty value would be the working directory: landings scattered wherever a process runs."""
        if isinstance(value, str) and not value.strip():
            raise ValueError("empty: give the raw volume's path (the landings are the only record of what VSA said)")
        return value

    @field_validator("extra_online_codes")
    @classmethod
    def _codes(cls, value: str) -> str:
        for code in (c.strip() for c in value.split(",")):
            if code and not re.fullmatch(r"-?\d{1,9}", code):
                raise ValueError(f"{code!r} is not a status code (integers, separated by commas)")
        return value

    @property
    def online_codes_added(self) -> tuple[int, ...]:
        return tuple(int(c) for c in self.extra_online_codes.split(",") if c.strip())

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

_Model = TypeVar("_Model", bound=MailSettings)


def get_settings() -> Settings:
    """Fresh settings from the environment (cheap; no caching so tests and tasks see changes).
    An invalid value, or an ``AGENT_BILLING_*`` name that is no setting (a misspelt one would be
    ignored: ``AGENT_BILLING_TIME_ZONE`` left the billing timezone UTC), is a
    ``ConfigurationError`` naming each variable and what to write."""
    _refuse_unknown_names(os.environ)
    return _read(Settings)


def _refuse_unknown_names(environ: Mapping[str, str]) -> None:
    known = {f"AGENT_BILLING_{name.upper()}" for name in Settings.model_fields} | set(OTHER_NAMES)
    # read as pydantic reads them: AGENT_BILLING_timezone is AGENT_BILLING_TIMEZONE
    unknown = sorted(n for n in environ if n.upper().startswith("AGENT_BILLING_") and n.upper() not in known
                     and not n.upper().startswith(OTHER_PREFIXES))
    if unknown:
        problems = "; ".join(
            f"{name} is no setting of agent-billing"
            + (f" (did you mean {close[0]}?)" if (close := get_close_matches(name.upper(), sorted(known), 1, 0.8))
               else "")
            for name in unknown
        )
        raise ConfigurationError(f"invalid setting(s): {problems}; the settings are listed in README.md, "
                                 "'Configuration'")


def mail_settings() -> MailSettings:
    """The sender and the data team, also when another setting is invalid (the error that
    setting causes is what the alert reports); a ``ConfigurationError`` only when these two
    are invalid themselves."""
    try:
        return get_settings()
    except ConfigurationError:
        return _read(MailSettings)


def _read(model: type[_Model]) -> _Model:
    try:
        return model()
    except ValidationError as exc:
        problems = "; ".join(
            f"AGENT_BILLING_{'_'.join(str(p) for p in e['loc']).upper()}={e.get('input')!r}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ConfigurationError(f"invalid setting(s): {problems}") from None


#: Environment variables that configure a deployment: Airflow's settings, connections and
#: variables, and every agent-billing setting.
DEPLOYMENT_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "AIRFLOW_CONFIG", "AGENT_BILLING_")


def forget_deployment_settings(environ: MutableMapping[str, str], keep: tuple[str, ...] = ()) -> None:
    """Remove a deployment's settings from ``environ`` (but the names starting with ``keep``):
    the tests and the demo, run from an operator's shell, must never reach its metadata
    database, warehouse or mail server."""
    for name in list(environ):
        if name.startswith(DEPLOYMENT_PREFIXES) and not (keep and name.startswith(keep)):
            del environ[name]
