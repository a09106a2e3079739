-- The agents of a landed agents.jsonl.gz read whose every line has VSA's usual shape (checked
-- by msgspec in sync/load.py before the read is sent: ids non-empty strings or JSON integers,
-- Online an integer, timestamps RFC 3339). Of the rules of load_agents.sql only the trimming of
-- ids applies to such lines, so the JSON is read into typed columns in one call; any other read
-- goes through load_agents.sql. tests/sync/test_load.py loads both shapes both ways.
INSERT INTO vsa_agents (snapshot_date, agent_id, agent_name, org_id, machine_group_id, online,
                        last_checkin_time, first_checkin, days_since_checkin)
SELECT CAST(:snapshot_date AS DATE), NULLIF(btrim(x."AgentId"), ''), x."AgentName", NULLIF(btrim(x."OrgId"), ''),
       NULLIF(btrim(x."MachineGroupId"), ''), x."Online",
       CAST(x."LastCheckInTime" AS TIMESTAMPTZ), CAST(x."FirstCheckIn" AS TIMESTAMPTZ),
       CAST(:snapshot_date AS DATE) - CAST(substr(x."LastCheckInTime", 1, 10) AS DATE)
FROM landed_lines,
     jsonb_to_record(CAST(j AS JSONB)) AS x("AgentId" text, "AgentName" text, "OrgId" text, "MachineGroupId" text,
                                            "Online" integer, "LastCheckInTime" text, "FirstCheckIn" text)
WHERE j IS NOT NULL
