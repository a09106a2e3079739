-- The stale rows of the contract's services (``billing_stale``, written by a trigger on
-- ``unit_changes``): the date of each unit change written, deleted or updated since the
-- contract's last run. One probe of ``ix_billing_stale_service`` per service.
SELECT st.seq, st.from_date
FROM services s
JOIN billing_stale st ON st.service_id = s.service_id
WHERE s.contract_id = :contract_id
