-- A posted invoice, with the name of the account it bills as it is when posted (never read
-- again from accounts: a rename must not re-address posted invoices).
INSERT INTO invoices (invoice_id, contract_id, invoice_date, invoice_month, currency, total,
                      total_e4, document_type, as_of, account_name)
SELECT :invoice_id, c.contract_id, :invoice_date, :invoice_month, :currency, :total,
       :total_e4, :document_type, :as_of, a.name
FROM contracts c
JOIN accounts a ON a.account_id = c.account_id
WHERE c.contract_id = :contract_id
