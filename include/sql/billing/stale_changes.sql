-- One contract's stale rows (``billing_stale``): for the preview and review posting, which
-- read one contract. The table holds what was written since the last runs; it has no contract
-- index (migration 0015), so this reads it whole.
SELECT seq, from_date FROM billing_stale WHERE contract_id = :contract_id
