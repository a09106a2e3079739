"""The corrections of a posted line found by an index.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07

Issue 10 (a year of history). Finance's queries ask for each line the adjustments that correct
it (``adjusts_line_id``: data dictionary 5.3), and so do the checks of a line's machines; no
index served them. On SQLite each such question scanned every posted line: about 14 s per
1,000 lines asked at 310,000 posted lines (the query of 0023's fill, measured). The index
covers the adjustments only (``adjusts_line_id`` is set on nothing else).
"""

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # if_not_exists: a development warehouse upgraded by a short-lived variant of 0023 that made it
    op.create_index("ix_invoice_lines_adjusts", "invoice_lines", ["adjusts_line_id"], if_not_exists=True,
                    postgresql_where=sa.text("adjusts_line_id IS NOT NULL"),
                    sqlite_where=sa.text("adjusts_line_id IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_invoice_lines_adjusts", table_name="invoice_lines", if_exists=True)
