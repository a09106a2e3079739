-- The members of one landed view, from a read whose every line has VSA's usual shape (its
-- AgentId a string without surrounding whitespace or a JSON integer; see load_agents_clean.sql).
INSERT INTO vsa_view_members (snapshot_date, view_id, agent_id)
SELECT CAST(:snapshot_date AS DATE), :view_id, x."AgentId"
FROM landed_lines, jsonb_to_record(CAST(j AS JSONB)) AS x("AgentId" text)
WHERE j IS NOT NULL
