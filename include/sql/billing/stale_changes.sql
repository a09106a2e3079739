-- The stale rows of the contract's services (``billing_stale``, written by a trigger on
-- ``unit_changes``): the date of each unit change written, deleted or updated since the
-- contract's last run. The services are listed (:service_ids): probes of
-- ``ix_billing_stale_service``, never a scan of rows other contracts' runs deleted.
SELECT seq, from_date FROM billing_stale WHERE service_id IN :service_ids
