-- The contract has no pending lines (any more): nothing is dated.
DELETE FROM billing_pending_runs WHERE contract_id = :contract_id
