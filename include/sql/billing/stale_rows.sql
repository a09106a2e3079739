-- Every contract's stale rows (``billing_stale``, written by a trigger on ``unit_changes``): the
-- date of each unit change written, deleted or updated since the contract's last run. One read
-- of the whole table at the start of a billing run (``settled.read_stale``): it has no contract
-- index (migration 0015), so that the trigger's writes only append; each contract's transaction
-- then reads its rows written since (``stale_changes``).
SELECT contract_id, seq, service_id, from_date FROM billing_stale
