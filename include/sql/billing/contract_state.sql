-- Where the contract's billing stands: its latest invoice and the date of its pending lines.
SELECT (SELECT MAX(invoice_month) FROM invoices WHERE contract_id = :contract_id) AS last_invoice_month,
       (SELECT MAX(as_of) FROM invoices WHERE contract_id = :contract_id) AS last_invoice_as_of,
       (SELECT MAX(as_of) FROM billing_pending WHERE contract_id = :contract_id) AS pending_as_of
