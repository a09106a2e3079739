-- Units per active rmm_agent_count service on :snapshot_date; a service with no agent counts 0.
INSERT INTO service_unit_counts (service_id, snapshot_date, units)
SELECT s.service_id, :snapshot_date, COUNT(sa.agent_id)
FROM services s
JOIN contracts c ON c.contract_id = s.contract_id
LEFT JOIN service_agents sa
  ON sa.snapshot_date = :snapshot_date AND sa.service_id = s.service_id
WHERE s.units_source = 'rmm_agent_count'
  AND s.start_date <= :snapshot_date AND (s.end_date IS NULL OR s.end_date >= :snapshot_date)
  AND c.start_date <= :snapshot_date AND (c.end_date IS NULL OR c.end_date >= :snapshot_date)
GROUP BY s.service_id
