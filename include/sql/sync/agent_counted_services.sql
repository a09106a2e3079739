-- The services counted in VSA on :snapshot_date (SPEC 4.1): active rmm_agent_count services
-- of active contracts, with their account's VSA org and their scope. The count counts them
-- (sync/counted_scopes.sql) and the quarantine judges them and their orgs (sync/quarantine.py).
SELECT s.service_id, acc.vsa_org_id, s.vsa_machine_group_id, s.vsa_view_id,
       s.exclude_never_checked_in, s.exclude_offline_days
FROM services s
JOIN contracts c ON c.contract_id = s.contract_id
JOIN accounts acc ON acc.account_id = c.account_id
WHERE s.units_source = 'rmm_agent_count'
  AND s.start_date <= :snapshot_date AND (s.end_date IS NULL OR s.end_date >= :snapshot_date)
  AND c.start_date <= :snapshot_date AND (c.end_date IS NULL OR c.end_date >= :snapshot_date)
