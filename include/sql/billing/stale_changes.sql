-- The contract's stale rows (``billing_stale``, written by a trigger on ``unit_changes``): the
-- date of each of its unit changes written, deleted or updated since its last run. One probe of
-- ``ix_billing_stale_contract``.
SELECT seq, from_date FROM billing_stale WHERE contract_id = :contract_id
