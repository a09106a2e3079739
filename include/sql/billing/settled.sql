-- What the contract's last run settled: every month before settled_before, as of as_of, with
-- the digest of the inputs it read (billing.settled).
SELECT settled_before, as_of, inputs_digest FROM billing_settled WHERE contract_id = :contract_id
