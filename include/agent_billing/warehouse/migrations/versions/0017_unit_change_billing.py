"""The view ``unit_change_billing``: every unit change and how it was billed, in one place.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06

Finance answers "why did my count change, and what did I pay for it?" from this view instead
of a query copied from the data dictionary. One row per unit change with the prorated line
that bills it (posted, else pending), and what the posted adjustments of that line did to it
since (``net_amount``: what the customer pays for the change now). A change that a later
re-derivation withdrew (a backfill showed it never happened) has no ``unit_changes`` row any
more, but its posted line does: it is listed as ``withdrawn``, with the adjustment that
reversed it in its net.
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# Posted adjustments of a line (exact in _e4; `amount` rounded to its 4 decimals on SQLite).
_POSTED_SINCE = "(SELECT {sum}(adj.{column}) FROM invoice_lines adj WHERE adj.adjusts_line_id = l.line_id)"
_PENDING_SINCE = "(SELECT SUM(adj.amount) FROM billing_pending adj WHERE adj.adjusts_line_id = l.line_id)"


def _posted_money() -> str:
    net_e4 = f"l.amount_e4 + COALESCE({_POSTED_SINCE.format(sum='SUM', column='amount_e4')}, 0)"
    net = f"ROUND(l.amount + COALESCE({_POSTED_SINCE.format(sum='SUM', column='amount')}, 0), 4)"
    return f"{net} AS net_amount, {net_e4} AS net_amount_e4, {_PENDING_SINCE} AS pending_adjustment"


VIEW = f"""
CREATE VIEW unit_change_billing AS
SELECT uc.change_id, s.contract_id, uc.service_id, uc.effective_date, uc.source,
       uc.units_before, uc.units_after, uc.delta, uc.detected_at,
       CASE WHEN l.line_id IS NOT NULL THEN 'posted'
            WHEN p.line_id IS NOT NULL THEN 'pending'
            ELSE 'no prorated line' END AS billing,
       l.invoice_id, COALESCE(l.line_id, p.line_id) AS line_id,
       COALESCE(l.amount, p.amount) AS amount, COALESCE(l.amount_e4, p.amount_e4) AS amount_e4,
       {_posted_money()}
FROM unit_changes uc
JOIN services s ON s.service_id = uc.service_id
LEFT JOIN invoice_lines l ON l.change_id = uc.change_id AND l.kind = 'prorated'
LEFT JOIN billing_pending p ON p.change_id = uc.change_id AND p.kind = 'prorated' AND l.line_id IS NULL
UNION ALL
SELECT l.change_id, l.contract_id, l.service_id, l.period_start, NULL, NULL, NULL, l.units, NULL,
       'withdrawn', l.invoice_id, l.line_id, l.amount, l.amount_e4,
       {_posted_money()}
FROM invoice_lines l
WHERE l.kind = 'prorated'
  AND NOT EXISTS (SELECT 1 FROM unit_changes uc WHERE uc.change_id = l.change_id)
"""


def upgrade() -> None:
    op.execute(VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW unit_change_billing")
