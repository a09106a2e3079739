-- Agents per VSA org on a merged snapshot date (the quarantine check compares two of these),
-- from the interval history: the previous good date's staging may be past its retention.
SELECT org_id, COUNT(*) AS agents
FROM vsa_agent_history
WHERE valid_from <= :snapshot_date AND (valid_to IS NULL OR valid_to > :snapshot_date)
GROUP BY org_id
