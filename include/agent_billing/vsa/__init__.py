"""Kaseya VSA: the REST client (:class:`VsaClient`); the stand-in server is the separate ``vsa_simulator``.

Records are :class:`VsaRecord` dicts (ids as exact decimal strings) carrying ``.raw``, the
record's JSON text as the server sent it.
"""

from agent_billing.vsa.client import RESOURCES, VsaClient, id_filter
from agent_billing.vsa.errors import (
    InconsistentExtract,
    VsaApiError,
    VsaAuthError,
    VsaError,
    VsaHttpError,
    VsaMalformedResponse,
    VsaUnreachable,
)
from agent_billing.vsa.records import VsaRecord

__all__ = [
    "RESOURCES",
    "InconsistentExtract",
    "VsaApiError",
    "VsaAuthError",
    "VsaClient",
    "VsaError",
    "VsaHttpError",
    "VsaMalformedResponse",
    "VsaRecord",
    "VsaUnreachable",
    "id_filter",
]
