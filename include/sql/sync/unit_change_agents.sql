-- The agents behind each nightly change of :snapshot_date (rows of ``unit_change_agents``;
-- ``changes.store`` writes the ones not stored yet), from the changed services' agent
-- lists of :snapshot_date and of the previous good snapshot :previous_date, both read from
-- the interval history (merged dates: a key is there when valid_from <= D < valid_to).
-- An agent new to the service is 'added' if VSA did not have it at :previous_date, else
-- 'moved_in' (group, view or exclusion change); one gone is 'removed' if VSA no longer has
-- it, else 'moved_out'. Names come from the snapshot that has the agent in the service: an
-- arrival's from :snapshot_date, a departure's from :previous_date (its name on the change
-- date may be another customer's machine).
-- Only the runs that start or end between the two dates are read (``:previous_date`` <
-- ``:snapshot_date``): a key present on the night but not before has a run covering the night
-- that starts after :previous_date, and no run covering :previous_date (runs of a key never
-- overlap); a departure the other way round. A quiet night reads its churn, not its services:
-- the runs starting or ending between the dates are found first, by the valid_from and
-- valid_to indexes (MATERIALIZED), and only then matched to the changed services. Reached
-- through a changed service's key instead, the read took every run the service ever had.
WITH changed AS (
    SELECT change_id, service_id FROM unit_changes
    WHERE effective_date = :snapshot_date AND source = 'nightly_sync'
),
arrived AS MATERIALIZED (
    SELECT service_id, agent_id FROM service_agent_history
    WHERE valid_from > :previous_date AND valid_from <= :snapshot_date
      AND (valid_to IS NULL OR valid_to > :snapshot_date)
),
departed AS MATERIALIZED (
    SELECT service_id, agent_id FROM service_agent_history
    WHERE valid_to > :previous_date AND valid_to <= :snapshot_date AND valid_from <= :previous_date
),
moved AS (
    SELECT c.change_id, sa.agent_id, 1 AS arrived
    FROM arrived sa
    JOIN changed c ON c.service_id = sa.service_id
    WHERE NOT EXISTS (
          SELECT 1 FROM service_agent_history p
          WHERE p.service_id = sa.service_id AND p.agent_id = sa.agent_id
            AND p.valid_from <= :previous_date AND (p.valid_to IS NULL OR p.valid_to > :previous_date))
    UNION ALL
    SELECT c.change_id, sa.agent_id, 0
    FROM departed sa
    JOIN changed c ON c.service_id = sa.service_id
    WHERE NOT EXISTS (
          SELECT 1 FROM service_agent_history n
          WHERE n.service_id = sa.service_id AND n.agent_id = sa.agent_id
            AND n.valid_from <= :snapshot_date AND (n.valid_to IS NULL OR n.valid_to > :snapshot_date))
)
SELECT m.change_id, m.agent_id,
       CASE WHEN m.arrived = 1 THEN COALESCE(now_agent.agent_name, then_agent.agent_name)
            ELSE COALESCE(then_agent.agent_name, now_agent.agent_name) END,
       CASE
           WHEN m.arrived = 1 AND then_agent.agent_id IS NULL THEN 'added'
           WHEN m.arrived = 1 THEN 'moved_in'
           WHEN now_agent.agent_id IS NULL THEN 'removed'
           ELSE 'moved_out'
       END
FROM moved m
LEFT JOIN vsa_agent_history now_agent
  ON now_agent.agent_id = m.agent_id AND now_agent.valid_from <= :snapshot_date
 AND (now_agent.valid_to IS NULL OR now_agent.valid_to > :snapshot_date)
LEFT JOIN vsa_agent_history then_agent
  ON then_agent.agent_id = m.agent_id AND then_agent.valid_from <= :previous_date
 AND (then_agent.valid_to IS NULL OR then_agent.valid_to > :previous_date)
