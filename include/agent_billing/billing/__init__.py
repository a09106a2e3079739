"""The billing engine: expected ledger − posted ledger ⇒ invoice lines (SPEC §5).

``run_billing(engine, as_of)`` bills every contract as of a date and is idempotent; it refuses
a date beyond the billing horizon (``BillingHorizonError``) and lists contracts that failed
(``BillingSummary.raise_for_failures`` raises ``BillingRunFailed``; ``failure_of`` names those
of several dates). ``pending_lines`` lists
what waits in ``billing_review`` and ``post_reviewed`` posts a contract's approved pending
lines; ``preview_invoice`` shows a contract's next invoice; ``export_invoice_lines`` writes an
invoice month as CSV or JSON.
"""

from agent_billing.billing.export import export_invoice_lines
from agent_billing.billing.horizon import BillingHorizonError, billing_horizon, check_horizon
from agent_billing.billing.review import pending_lines, post_reviewed
from agent_billing.billing.run import (
    BillingRunFailed,
    BillingSummary,
    ContractResult,
    FailedContract,
    failure_of,
    run_billing,
)

__all__ = [
    "BillingHorizonError",
    "BillingRunFailed",
    "BillingSummary",
    "ContractResult",
    "FailedContract",
    "billing_horizon",
    "check_horizon",
    "export_invoice_lines",
    "failure_of",
    "pending_lines",
    "post_reviewed",
    "run_billing",
]
