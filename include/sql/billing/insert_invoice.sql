INSERT INTO invoices (invoice_id, contract_id, invoice_date, invoice_month, currency, total,
                      total_e4, document_type, as_of)
VALUES (:invoice_id, :contract_id, :invoice_date, :invoice_month, :currency, :total,
        :total_e4, :document_type, :as_of)
