-- One invoice (or credit note) with its account (the name as posted).
SELECT i.invoice_id, i.contract_id, c.account_id, i.account_name, i.invoice_date,
       i.invoice_month, i.document_type, i.currency, i.total, i.as_of
FROM invoices i
JOIN contracts c ON c.contract_id = i.contract_id
WHERE i.invoice_id = :invoice_id
