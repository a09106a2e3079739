-- Scopes that point at nothing (SPEC 4.1): every rmm_agent_count service active at some point
-- in [:snapshot_date, :active_until] whose account's VSA org, machine group or view is missing
-- from the VSA snapshot of :snapshot_date. A machine group counts as missing when no group of
-- that id belongs to the account's org. One row per missing piece:
--   service_id, missing ('org' | 'machine_group' | 'view'), missing_id,
--   org_id, org_exists (1/0), org_name (from the snapshot, NULL when the org is missing).
-- This file is the only place that knows where the snapshot's orgs, groups and views live.
WITH counted AS (
    SELECT s.service_id, acc.vsa_org_id AS org_id, s.vsa_machine_group_id, s.vsa_view_id,
           o.org_id AS found_org_id, o.org_name
    FROM services s
    JOIN contracts c ON c.contract_id = s.contract_id
    JOIN accounts acc ON acc.account_id = c.account_id
    LEFT JOIN vsa_orgs o ON o.snapshot_date = :snapshot_date AND o.org_id = acc.vsa_org_id
    WHERE s.units_source = 'rmm_agent_count'
      AND s.start_date <= :active_until AND (s.end_date IS NULL OR s.end_date >= :snapshot_date)
      AND c.start_date <= :active_until AND (c.end_date IS NULL OR c.end_date >= :snapshot_date)
)
SELECT service_id, 'org' AS missing, org_id AS missing_id, org_id, 0 AS org_exists,
       NULL AS org_name
FROM counted
WHERE found_org_id IS NULL
UNION ALL
SELECT k.service_id, 'machine_group', k.vsa_machine_group_id, k.org_id,
       CASE WHEN k.found_org_id IS NULL THEN 0 ELSE 1 END, k.org_name
FROM counted k
WHERE k.vsa_machine_group_id IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM vsa_machine_groups g
      WHERE g.snapshot_date = :snapshot_date AND g.machine_group_id = k.vsa_machine_group_id
        AND g.org_id = k.org_id)
UNION ALL
SELECT k.service_id, 'view', k.vsa_view_id, k.org_id,
       CASE WHEN k.found_org_id IS NULL THEN 0 ELSE 1 END, k.org_name
FROM counted k
WHERE k.vsa_view_id IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM vsa_views v
      WHERE v.snapshot_date = :snapshot_date AND v.view_id = k.vsa_view_id)
ORDER BY 1, 2
