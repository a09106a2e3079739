-- The agents each counted service counts on :snapshot_date: every agent of the service's org
-- (counted_scopes) that its scope takes (sync/agent_in_scope.sql). Agent ids are unique per
-- snapshot (the quality gate runs first), so no DISTINCT is needed: the pairs are unique, as
-- the merge into service_agent_history (sync/intervals.py) requires. The few services are
-- hash-joined to the date's agents by org: one pass over the agents.
SELECT s.service_id, a.agent_id
FROM counted_scopes s
JOIN vsa_agents a ON a.snapshot_date = :snapshot_date AND a.org_id = s.vsa_org_id
WHERE a.agent_id IS NOT NULL
  AND /*include sync/agent_in_scope.sql*/
