-- The view of every service counted in VSA on :snapshot_date that counts a view: the count
-- names those whose view the date's landing lacks (sync/changes/counting.py). A service or
-- contract not active on the date needs no view that night, and is not warned about.
SELECT service_id, vsa_view_id
FROM /*include sync/agent_counted_services.sql*/ counted
WHERE vsa_view_id IS NOT NULL
ORDER BY service_id
