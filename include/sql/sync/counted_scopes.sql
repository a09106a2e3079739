-- The scope of every service the count counts on :snapshot_date: the services counted in VSA,
-- minus those in the temporary table uncounted_services (their scope is broken tonight, or
-- their view was not landed). The count keeps it as the temporary table counted_scopes, which
-- its queries join, and merges it into service_scope_history (sync/changes/counting.py).
SELECT service_id, vsa_org_id, vsa_machine_group_id, vsa_view_id,
       exclude_never_checked_in, exclude_offline_days
FROM /*include sync/agent_counted_services.sql*/ counted
WHERE service_id NOT IN (SELECT service_id FROM uncounted_services)
