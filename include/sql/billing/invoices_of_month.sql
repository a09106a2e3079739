-- The invoices and credit notes of one invoice month with their line counts.
SELECT i.invoice_id, i.contract_id, c.account_id, i.account_name, i.invoice_date,
       i.invoice_month, i.document_type, i.currency, i.total, i.as_of,
       (SELECT COUNT(*) FROM invoice_lines l WHERE l.invoice_id = i.invoice_id) AS lines
FROM invoices i
JOIN contracts c ON c.contract_id = i.contract_id
WHERE i.invoice_month = :invoice_month
ORDER BY i.invoice_id
