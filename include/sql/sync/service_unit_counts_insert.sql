-- Units per active rmm_agent_count service on :snapshot_date, from the agents the count merged
-- into service_agent_history on that date; a service with no agent counts 0, a service in
-- uncounted_services (its scope is broken tonight) gets no count. The history's runs covering
-- the date are counted per service first, in one hashed pass, and only then joined to the few
-- thousand services: joined the other way round, the plan sorted every run by service to group it.
INSERT INTO service_unit_counts (service_id, snapshot_date, units)
SELECT s.service_id, :snapshot_date, COALESCE(n.agents, 0)
FROM services s
JOIN contracts c ON c.contract_id = s.contract_id
LEFT JOIN (
    SELECT service_id, COUNT(*) AS agents
    FROM service_agent_history
    WHERE valid_from <= :snapshot_date AND (valid_to IS NULL OR valid_to > :snapshot_date)
    GROUP BY service_id
) n ON n.service_id = s.service_id
WHERE s.units_source = 'rmm_agent_count'
  AND s.start_date <= :snapshot_date AND (s.end_date IS NULL OR s.end_date >= :snapshot_date)
  AND c.start_date <= :snapshot_date AND (c.end_date IS NULL OR c.end_date >= :snapshot_date)
  AND s.service_id NOT IN (SELECT service_id FROM uncounted_services)
