"""The billing engine: expected ledger − posted ledger ⇒ invoice lines (SPEC §5).

``run_billing(engine, as_of)`` bills every contract as of a date and is idempotent;
``pending_lines`` lists what waits in ``billing_review`` and ``post_reviewed`` posts a
contract's approved pending lines; ``export_invoice_lines`` writes an invoice month as CSV.
"""

from agent_billing.billing.export import export_invoice_lines
from agent_billing.billing.review import pending_lines, post_reviewed
from agent_billing.billing.run import BillingSummary, ContractResult, run_billing

__all__ = [
    "BillingSummary",
    "ContractResult",
    "export_invoice_lines",
    "pending_lines",
    "post_reviewed",
    "run_billing",
]
