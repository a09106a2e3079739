"""The billing timezone's rule, in a module of its own: the nightly DAG checks the setting when
it is parsed, where importing the settings (pydantic) would cost every parse."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: Files of the system's zone database that stand for the machine's own setting, not a zone,
#: and its copies of every zone under other rules (``right/``: with leap seconds).
MACHINE_ZONES = ("localtime", "posixrules", "Factory")
ZONE_COPIES = ("posix/", "right/")


def known_timezone(value: str) -> str:
    """``value`` if it names an IANA timezone, else a ``ValueError`` saying what to write."""
    if value in MACHINE_ZONES:
        raise ValueError(f"timezone {value!r} is this machine's own setting, so each machine would bill by "
                         "its clock: use an IANA name such as Europe/Amsterdam")
    if value.startswith(ZONE_COPIES):
        raise ValueError(f"timezone {value!r} is a copy of a zone in this machine's zone files: use its IANA "
                         f"name ({value.split('/', 1)[1]})")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {value!r} (use an IANA name such as Europe/Amsterdam)") from None
    return value
