-- Where the contract's billing stands: its latest invoice run (with or without an invoice),
-- the date of its latest invoice, and the date of its pending lines.
SELECT (SELECT MAX(m) FROM (
            SELECT MAX(invoice_month) AS m FROM invoices WHERE contract_id = :contract_id
            UNION ALL
            SELECT MAX(invoice_month) FROM billing_cycles WHERE contract_id = :contract_id
        ) months) AS last_invoice_month,
       (SELECT MAX(as_of) FROM invoices WHERE contract_id = :contract_id) AS last_invoice_as_of,
       (SELECT as_of FROM billing_pending_runs WHERE contract_id = :contract_id) AS pending_as_of
