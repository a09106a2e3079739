-- A no-op update: takes the contract's row lock (PostgreSQL) or the write lock (SQLite) first
-- thing in the transaction, so that two concurrent runs bill one contract one after the other.
UPDATE contracts SET billing_day = billing_day WHERE contract_id = :contract_id
