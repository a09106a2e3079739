-- The agents of a landed agents.jsonl.gz read whose every line has VSA's usual shape (checked
-- by msgspec in sync/load.py before the read is sent: ids strings without surrounding
-- whitespace or JSON integers, Online an integer, timestamps RFC 3339 as msgspec re-encodes
-- them). The rules of the load (agent_row in sync/load.py) change nothing in such values, so
-- this is a typed read and no rule: the text of a JSON integer id is its decimal string, and
-- days_since_checkin counts from the date as written. Any other read goes through agent_row.
-- tests/sync/test_load.py loads both shapes both ways.
INSERT INTO vsa_agents (snapshot_date, agent_id, agent_name, org_id, machine_group_id, online,
                        last_checkin_time, first_checkin, days_since_checkin)
SELECT CAST(:snapshot_date AS DATE), x."AgentId", x."AgentName", x."OrgId", x."MachineGroupId", x."Online",
       CAST(x."LastCheckInTime" AS TIMESTAMPTZ), CAST(x."FirstCheckIn" AS TIMESTAMPTZ),
       CAST(:snapshot_date AS DATE) - CAST(substr(x."LastCheckInTime", 1, 10) AS DATE)
FROM landed_lines,
     jsonb_to_record(CAST(j AS JSONB)) AS x("AgentId" text, "AgentName" text, "OrgId" text, "MachineGroupId" text,
                                            "Online" integer, "LastCheckInTime" text, "FirstCheckIn" text)
WHERE j IS NOT NULL
