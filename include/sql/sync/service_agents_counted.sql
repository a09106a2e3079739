-- The agents each active rmm_agent_count service counts on :snapshot_date (SPEC 4.1):
-- the account's VSA org, optionally one machine group (with its subgroups through the
-- ParentMachineGroupId tree when include_subgroups), optionally intersected with a view,
-- minus the optional exclusions (never checked in; offline for more than N days). Services in
-- the temporary table uncounted_services (their scope is broken tonight) count nothing.
-- Agent ids are unique per snapshot (the quality gate runs first), so no DISTINCT is needed:
-- the pairs are unique, as the merge into service_agent_history (sync/intervals.py) requires.
-- The few active services are resolved first (``scoped``, materialized) and hash-joined to the
-- date's agents by org; group and view membership are uncorrelated IN lists (hashed once), so
-- the plan stays one pass over the agents whatever the statistics say.
WITH RECURSIVE scope_groups (service_id, machine_group_id) AS (
    SELECT s.service_id, g.machine_group_id
    FROM services s
    JOIN vsa_machine_groups g
      ON g.snapshot_date = :snapshot_date AND g.machine_group_id = s.vsa_machine_group_id
    WHERE s.units_source = 'rmm_agent_count'
    UNION
    SELECT sg.service_id, child.machine_group_id
    FROM scope_groups sg
    JOIN services s ON s.service_id = sg.service_id AND s.include_subgroups
    JOIN vsa_machine_groups child
      ON child.snapshot_date = :snapshot_date AND child.parent_machine_group_id = sg.machine_group_id
),
scoped AS MATERIALIZED (
    SELECT s.service_id, acc.vsa_org_id, s.vsa_machine_group_id, s.vsa_view_id,
           s.exclude_never_checked_in, s.exclude_offline_days
    FROM services s
    JOIN contracts c ON c.contract_id = s.contract_id
    JOIN accounts acc ON acc.account_id = c.account_id
    WHERE s.units_source = 'rmm_agent_count'
      AND s.start_date <= :snapshot_date AND (s.end_date IS NULL OR s.end_date >= :snapshot_date)
      AND s.service_id NOT IN (SELECT service_id FROM uncounted_services)
      AND c.start_date <= :snapshot_date AND (c.end_date IS NULL OR c.end_date >= :snapshot_date)
)
SELECT s.service_id, a.agent_id
FROM scoped s
JOIN vsa_agents a ON a.snapshot_date = :snapshot_date AND a.org_id = s.vsa_org_id
WHERE a.agent_id IS NOT NULL
  AND (s.vsa_machine_group_id IS NULL OR (s.service_id, a.machine_group_id) IN (
        SELECT service_id, machine_group_id FROM scope_groups))
  AND (s.vsa_view_id IS NULL OR (s.vsa_view_id, a.agent_id) IN (
        SELECT view_id, agent_id FROM vsa_view_members WHERE snapshot_date = :snapshot_date))
  AND /*include sync/agent_is_counted.sql*/
