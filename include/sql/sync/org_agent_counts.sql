-- Agents per VSA org in one snapshot (the quarantine check compares two of these).
SELECT org_id, COUNT(*) AS agents
FROM vsa_agents
WHERE snapshot_date = :snapshot_date
GROUP BY org_id
