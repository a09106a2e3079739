-- The pairs of service_agents_counted.sql whose agent is in the temporary table changed_agents
-- or whose service is in changed_services: what the count compares with the date before when
-- nothing else can have changed (sync/changes/counting.py). The changed agents are a few
-- thousand of the night's: each is joined to the scopes of its org. A changed service reads
-- its org's agents. UNION: a pair of a changed agent and a changed service is in both.
SELECT s.service_id, a.agent_id
FROM changed_agents k
JOIN vsa_agents a ON a.snapshot_date = :snapshot_date AND a.agent_id = k.agent_id
JOIN counted_scopes s ON s.vsa_org_id = a.org_id
WHERE /*include sync/agent_in_scope.sql*/
UNION
SELECT s.service_id, a.agent_id
FROM changed_services k
JOIN counted_scopes s ON s.service_id = k.service_id
JOIN vsa_agents a ON a.snapshot_date = :snapshot_date AND a.org_id = s.vsa_org_id
WHERE a.agent_id IS NOT NULL
  AND /*include sync/agent_in_scope.sql*/
