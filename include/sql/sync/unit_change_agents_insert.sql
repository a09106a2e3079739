-- The agents behind each nightly change of :snapshot_date, from the service's agent lists of
-- :snapshot_date and the previous good snapshot :previous_date. An agent new to the service is
-- 'added' if VSA did not have it at :previous_date, else 'moved_in' (group, view or exclusion
-- change); one gone is 'removed' if VSA no longer has it, else 'moved_out'.
INSERT INTO unit_change_agents (change_id, agent_id, agent_name, event)
SELECT uc.change_id, cur.agent_id, agent.agent_name,
       CASE WHEN EXISTS (SELECT 1 FROM vsa_agents pa
                         WHERE pa.snapshot_date = :previous_date AND pa.agent_id = cur.agent_id)
            THEN 'moved_in' ELSE 'added' END
FROM unit_changes uc
JOIN service_agents cur
  ON cur.snapshot_date = :snapshot_date AND cur.service_id = uc.service_id
JOIN vsa_agents agent ON agent.snapshot_date = :snapshot_date AND agent.agent_id = cur.agent_id
WHERE uc.effective_date = :snapshot_date AND uc.source = 'nightly_sync'
  AND NOT EXISTS (SELECT 1 FROM service_agents prev
                  WHERE prev.snapshot_date = :previous_date AND prev.service_id = cur.service_id
                    AND prev.agent_id = cur.agent_id)
UNION ALL
SELECT uc.change_id, prev.agent_id, agent.agent_name,
       CASE WHEN EXISTS (SELECT 1 FROM vsa_agents na
                         WHERE na.snapshot_date = :snapshot_date AND na.agent_id = prev.agent_id)
            THEN 'moved_out' ELSE 'removed' END
FROM unit_changes uc
JOIN service_agents prev
  ON prev.snapshot_date = :previous_date AND prev.service_id = uc.service_id
JOIN vsa_agents agent ON agent.snapshot_date = :previous_date AND agent.agent_id = prev.agent_id
WHERE uc.effective_date = :snapshot_date AND uc.source = 'nightly_sync'
  AND NOT EXISTS (SELECT 1 FROM service_agents cur
                  WHERE cur.snapshot_date = :snapshot_date AND cur.service_id = prev.service_id
                    AND cur.agent_id = prev.agent_id)
