-- Services counted in VSA whose count on :snapshot_date is 0 (allowed, but worth a look):
-- service_id, org_id and org_name (from the snapshot). Services whose scope points at
-- nothing are removed by the caller (scope_problems.sql is the one definition of that).
SELECT u.service_id, acc.vsa_org_id AS org_id, o.org_name
FROM service_unit_counts u
JOIN services s ON s.service_id = u.service_id
JOIN contracts c ON c.contract_id = s.contract_id
JOIN accounts acc ON acc.account_id = c.account_id
LEFT JOIN vsa_orgs o ON o.snapshot_date = :snapshot_date AND o.org_id = acc.vsa_org_id
WHERE u.snapshot_date = :snapshot_date AND u.units = 0
ORDER BY u.service_id
