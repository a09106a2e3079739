-- The date the contract's pending lines are as of: the run that wrote or kept them.
INSERT INTO billing_pending_runs (contract_id, as_of, ran_at)
VALUES (:contract_id, :as_of, CURRENT_TIMESTAMP)
ON CONFLICT (contract_id) DO UPDATE SET as_of = excluded.as_of, ran_at = excluded.ran_at
