-- The agents of one snapshot date as the quality gate validates them: one row per loaded agent,
-- its machine group looked up among the same date's groups (NULL when unknown).
-- This is the gate's only source of agent rows. Each source table is named on one line: when the
-- night's rows move (e.g. to staging tables), change those lines. GX runs this query as a
-- subquery (its query assets must start with SELECT, so no WITH clause here). The marker
-- /*id_collation*/ is replaced per engine (sources.py): on PostgreSQL ids compare in byte order.
SELECT a.agent_id /*id_collation*/ AS agent_id, a.org_id, a.machine_group_id, a.online,
       CASE WHEN g.machine_group_id IS NULL THEN 0 ELSE 1 END AS group_known,
       CASE WHEN g.machine_group_id IS NULL THEN a.org_id ELSE g.org_id END AS group_org_id
FROM (SELECT * FROM vsa_agents WHERE snapshot_date = :d) a
LEFT JOIN (SELECT * FROM vsa_machine_groups WHERE snapshot_date = :d) g
  ON g.machine_group_id = a.machine_group_id
