-- The contract's pending lines that a run kept are its lines as of :as_of too.
UPDATE billing_pending SET as_of = :as_of WHERE contract_id = :contract_id AND as_of <> :as_of
