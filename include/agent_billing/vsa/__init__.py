"""Kaseya VSA: the REST client (:class:`VsaClient`) and, in ``simulator``, a stand-in server.

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
