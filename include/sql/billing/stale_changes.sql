-- One contract's stale rows (``billing_stale``: seq, service, date) after the ``seq`` :after: in a billing run's
-- contract transaction, those written since the run read the whole table (``stale_rows``), a
-- range of the key; for the preview and review posting (:after = -1), all of them, read whole
-- (the table has no contract index: migration 0015).
SELECT seq, service_id, from_date FROM billing_stale WHERE seq > :after AND contract_id = :contract_id
