-- Get Units Now with exclusions: how many of the scope's agents, read from VSA just now and
-- tallied by (online, days_since_checkin) in the temporary table units_now_agents, the service
-- counts. The rule is the night's own (agent_is_counted.sql).
SELECT COALESCE(SUM(a.agents), 0)
FROM units_now_agents a
CROSS JOIN services s
WHERE s.service_id = :service_id
  AND /*include sync/agent_is_counted.sql*/
