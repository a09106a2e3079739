-- A no-op update: takes the contract's row lock (PostgreSQL) or the write lock (SQLite) first
-- thing in the transaction, so that two concurrent runs bill one contract one after the other;
-- it returns the contract as it stands once locked.
UPDATE contracts SET billing_day = billing_day WHERE contract_id = :contract_id
RETURNING contract_id, account_id, currency, billing_day, posting, start_date, end_date
