-- Record that the invoice run of :invoice_month happened for the contract.
INSERT INTO billing_cycles (contract_id, invoice_month, as_of, invoice_id)
VALUES (:contract_id, :invoice_month, :as_of, :invoice_id)
