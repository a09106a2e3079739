-- The complete nights on or before :as_of that `contracts apply` made one of the contract's
-- services countable on after they were counted, and that have not been counted again since
-- (nights_to_recount, migration 0021): their days would bill at the units of another night.
-- :contract_id NULL: of every contract.
SELECT s.contract_id, n.service_id, n.snapshot_date
FROM nights_to_recount n
JOIN services s ON s.service_id = n.service_id
JOIN sync_runs r ON r.snapshot_date = n.snapshot_date AND r.status = 'complete'
WHERE (CAST(:contract_id AS TEXT) IS NULL OR s.contract_id = :contract_id) AND n.snapshot_date <= :as_of
ORDER BY s.contract_id, n.service_id, n.snapshot_date
