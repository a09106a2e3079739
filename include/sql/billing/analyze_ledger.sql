-- Fresh planner statistics for the ledger after a run posted (PostgreSQL): the first runs
-- grow it from nothing, and plans made for an empty table (the foreign-key checks' too)
-- would otherwise scan it row by row.
ANALYZE invoices, invoice_lines
