DELETE FROM billing_settled WHERE contract_id = :contract_id
