-- The agents of a landed agents.jsonl.gz (its JSON lines COPYed as text into landed_lines,
-- each parsed once here: cheaper than a jsonb column), as the
-- Python path of sync/load.py makes them: ids as exact decimal strings (a JSON number or a
-- trimmed string; empty = NULL), Online as an integer, timestamps NULL when unreadable, and
-- days_since_checkin from the date written in LastCheckInTime to the snapshot date.
-- A timestamp is readable when it has VSA's usual shape (digits in place, checked with a cheap
-- translate) or, failing that, matches the ISO 8601 pattern; each test runs once per row (the
-- inner query is not flattened: OFFSET 0), not once per use.
INSERT INTO vsa_agents (snapshot_date, agent_id, agent_name, org_id, machine_group_id, online,
                        last_checkin_time, first_checkin, days_since_checkin)
SELECT CAST(:snapshot_date AS DATE), agent_id, agent_name, org_id, machine_group_id, online,
       CASE WHEN last_ok THEN CAST(last_checkin AS TIMESTAMPTZ) END,
       CASE WHEN first_ok THEN CAST(first_checkin AS TIMESTAMPTZ) END,
       CASE WHEN last_ok THEN CAST(:snapshot_date AS DATE) - CAST(substr(last_checkin, 1, 10) AS DATE) END
FROM (
    SELECT f.*,
           CASE WHEN translate(f.last_checkin, '0123456789', '0000000000') = '0000-00-00T00:00:00.000Z' THEN TRUE
                ELSE f.last_checkin ~ '^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:?\d{2})?$'
           END AS last_ok,
           CASE WHEN translate(f.first_checkin, '0123456789', '0000000000') = '0000-00-00T00:00:00.000Z' THEN TRUE
                ELSE f.first_checkin ~ '^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:?\d{2})?$'
           END AS first_ok
    FROM (
        SELECT
            CASE WHEN jsonb_typeof(j -> 'AgentId') = 'number' THEN trim_scale((j ->> 'AgentId')::numeric)::text
                 ELSE NULLIF(btrim(j ->> 'AgentId'), '') END AS agent_id,
            j ->> 'AgentName' AS agent_name,
            CASE WHEN jsonb_typeof(j -> 'OrgId') = 'number' THEN trim_scale((j ->> 'OrgId')::numeric)::text
                 ELSE NULLIF(btrim(j ->> 'OrgId'), '') END AS org_id,
            CASE WHEN jsonb_typeof(j -> 'MachineGroupId') = 'number' THEN trim_scale((j ->> 'MachineGroupId')::numeric)::text
                 ELSE NULLIF(btrim(j ->> 'MachineGroupId'), '') END AS machine_group_id,
            CAST(NULLIF(j ->> 'Online', '') AS INTEGER) AS online,
            j ->> 'LastCheckInTime' AS last_checkin,
            j ->> 'FirstCheckIn' AS first_checkin
        FROM (SELECT CAST(j AS JSONB) AS j FROM landed_lines WHERE j IS NOT NULL OFFSET 0) parsed
        OFFSET 0
    ) f
    OFFSET 0
) readable
