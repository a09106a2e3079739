-- The agents of one snapshot date as the quality gate validates them: one row per loaded agent,
-- its machine group looked up among the same date's groups (NULL when unknown).
-- This is the gate's only source of agent rows. Each source table is named on one line: when the
-- night's rows move (e.g. to staging tables), change those lines. GX runs this query as a
-- subquery (its query assets must start with SELECT, so no WITH clause here). The marker
-- /*id_collation*/ is replaced per engine (sources.py): on PostgreSQL ids compare in byte order.
-- checkin_known: an agent that has checked in (any Online code but 199, never checked in) has
-- a readable last check-in; the load leaves an unreadable one NULL, which the offline-days
-- exclusion would read as "not checked in for ever" and stop counting the agent.
SELECT a.agent_id /*id_collation*/ AS agent_id, a.org_id, a.machine_group_id, a.online,
       CASE WHEN g.machine_group_id IS NULL THEN 0 ELSE 1 END AS group_known,
       CASE WHEN a.last_checkin_time IS NULL AND a.online <> 199 THEN 0 ELSE 1 END AS checkin_known,
       CASE WHEN g.machine_group_id IS NULL THEN a.org_id ELSE g.org_id END AS group_org_id
FROM (SELECT * FROM vsa_agents WHERE snapshot_date = :d) a
LEFT JOIN (SELECT * FROM vsa_machine_groups WHERE snapshot_date = :d) g
  ON g.machine_group_id = a.machine_group_id
