-- One row per posted line of the invoices of one invoice month (export for finance): with
-- line_id, the invoice's month and total, and for an adjustment the invoice of the line it
-- corrects (adjusts_invoice_id: that line is in the export of that invoice's month), and when
-- the invoice was posted. Names as posted.
SELECT i.invoice_id, i.invoice_month, i.invoice_date, i.document_type, i.currency, i.total AS invoice_total,
       i.contract_id, c.account_id, i.account_name, l.line_id, l.service_id,
       l.service_name, l.kind, l.period_start, l.period_end, l.units, l.unit_price,
       l.days, l.days_in_period, l.amount, l.change_id, l.adjusts_line_id,
       corrected.invoice_id AS adjusts_invoice_id, l.description, i.posted_at
FROM invoices i
JOIN contracts c ON c.contract_id = i.contract_id
JOIN invoice_lines l ON l.invoice_id = i.invoice_id
LEFT JOIN invoice_lines corrected ON corrected.line_id = l.adjusts_line_id
WHERE i.invoice_month = :invoice_month
ORDER BY i.invoice_id, l.service_id, l.period_start, l.kind, l.line_key
