SELECT contract_id, account_id, currency, billing_day, posting, start_date, end_date
FROM contracts
WHERE contract_id = :contract_id
