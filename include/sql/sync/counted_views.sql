-- The view of every service counted in VSA on :snapshot_date that counts a view: the night
-- extracts these views (sync/pipeline.py, active_view_ids), and the count names the services
-- whose view its landing lacks (sync/changes/counting.py). A service or contract not active
-- on the date needs no view that night.
SELECT service_id, vsa_view_id
FROM /*include sync/agent_counted_services.sql*/ counted
WHERE vsa_view_id IS NOT NULL
ORDER BY service_id
