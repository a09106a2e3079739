-- Whether counted service ``s`` (a row of counted_scopes) counts agent ``a`` of its org on
-- :snapshot_date (SPEC 4.1): the agent is in one of the machine groups the scope covers
-- (counted_groups), in the scope's view, and not excluded. Group and view membership are
-- uncorrelated IN lists (hashed once), so a plan stays one pass over the agents it reads.
-- Written once, included by the count of every pair and by the count of the changed pairs.
(s.vsa_machine_group_id IS NULL OR (s.service_id, a.machine_group_id) IN (
    SELECT service_id, machine_group_id FROM counted_groups))
AND (s.vsa_view_id IS NULL OR (s.vsa_view_id, a.agent_id) IN (
    SELECT view_id, agent_id FROM vsa_view_members WHERE snapshot_date = :snapshot_date))
AND /*include sync/agent_is_counted.sql*/
