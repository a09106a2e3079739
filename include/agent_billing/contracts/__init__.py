"""``agent-billing contracts apply FILE``: declarative accounts, contracts and services (SPEC §9).

The file is validated whole before anything is written (errors name the file, line, entry and
field); a plan compares it with the warehouse and refuses what a lock forbids; the plan is
executed in one transaction; applying the same file twice changes nothing. A service's
``units_source`` and unit scope are locked once saved (SPEC §4.2); the database enforces the
same rule with triggers, so it cannot be bypassed.

Modules: ``limits`` (lengths and ranges), ``schema`` (YAML with lines, validation), ``plan``
(compare and lock), ``apply`` (execute, scope check). A manual service's new units are written
by the sync's one writer of unit changes, ``agent_billing.sync.changes.record_manual_change``.
"""

from agent_billing.contracts.apply import apply_contracts, plan_contracts, run_contracts
from agent_billing.contracts.plan import FieldChange, Plan, PlanEntry
from agent_billing.contracts.schema import (
    LOCKED_FIELDS,
    ContractsDocument,
    ContractsFile,
    ContractsFileError,
    load_contracts_file,
    parse_contracts,
    read_contracts_file,
)

ApplyReport = Plan  # the report of an apply is the plan it executed

__all__ = [
    "LOCKED_FIELDS",
    "ApplyReport",
    "ContractsDocument",
    "ContractsFile",
    "ContractsFileError",
    "FieldChange",
    "Plan",
    "PlanEntry",
    "apply_contracts",
    "load_contracts_file",
    "parse_contracts",
    "plan_contracts",
    "read_contracts_file",
    "run_contracts",
]
