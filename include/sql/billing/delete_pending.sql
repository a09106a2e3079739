DELETE FROM billing_pending WHERE contract_id = :contract_id
