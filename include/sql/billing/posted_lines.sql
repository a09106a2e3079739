-- The contract's posted ledger from the month :since (a line and its adjustments are of one
-- month), in the field order of billing.model.PostedLine.
SELECT line_id, invoice_id, line_key, service_id, kind, period_start, period_end, units,
       unit_price, days_in_period, amount, change_id, adjusts_line_id
FROM invoice_lines
WHERE contract_id = :contract_id AND period_start >= :since
