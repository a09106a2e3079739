-- The names of a contract's services, as posting writes them on the invoice's lines.
SELECT service_id, name FROM services WHERE contract_id = :contract_id
