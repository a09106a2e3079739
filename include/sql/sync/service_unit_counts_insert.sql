-- Units per active rmm_agent_count service on :snapshot_date; a service with no agent counts 0.
-- The date's service_agents (millions of rows at 1M agents) are counted per service first, in
-- one hashed pass, and only then joined to the few thousand services: joined the other way
-- round, the plan sorted every agent row by service (spilling to disk) to group it.
INSERT INTO service_unit_counts (service_id, snapshot_date, units)
SELECT s.service_id, :snapshot_date, COALESCE(n.agents, 0)
FROM services s
JOIN contracts c ON c.contract_id = s.contract_id
LEFT JOIN (
    SELECT service_id, COUNT(*) AS agents FROM service_agents WHERE snapshot_date = :snapshot_date GROUP BY service_id
) n ON n.service_id = s.service_id
WHERE s.units_source = 'rmm_agent_count'
  AND s.start_date <= :snapshot_date AND (s.end_date IS NULL OR s.end_date >= :snapshot_date)
  AND c.start_date <= :snapshot_date AND (c.end_date IS NULL OR c.end_date >= :snapshot_date)
