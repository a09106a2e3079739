-- The members of one landed view (agents_in_view/<view>.jsonl.gz, COPYed into landed_lines).
INSERT INTO vsa_view_members (snapshot_date, view_id, agent_id)
SELECT CAST(:snapshot_date AS DATE), :view_id,
       CASE WHEN jsonb_typeof(j -> 'AgentId') = 'number' THEN trim_scale((j ->> 'AgentId')::numeric)::text
            ELSE NULLIF(btrim(j ->> 'AgentId'), '') END
FROM (SELECT CAST(j AS JSONB) AS j FROM landed_lines WHERE j IS NOT NULL OFFSET 0) parsed
