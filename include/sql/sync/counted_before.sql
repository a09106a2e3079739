-- The services with a nightly change on :snapshot_date that the good night before it,
-- :previous_date, did not count (their view was not landed, their scope was broken), each with
-- its latest good count before :previous_date: the agents behind such a change are the
-- movement since that count, not since :previous_date (where the service has no agents).
-- Per changed service, one probe of the (service_id, snapshot_date) key; the latest earlier
-- good count is walked back in date order, only for the services :previous_date missed.
SELECT uc.service_id,
       (SELECT c.snapshot_date FROM service_unit_counts c
         WHERE c.service_id = uc.service_id AND c.snapshot_date < :previous_date
           AND (SELECT r.status FROM sync_runs r WHERE r.snapshot_date = c.snapshot_date) = 'complete'
         ORDER BY c.snapshot_date DESC
         LIMIT 1) AS counted_on
FROM unit_changes uc
WHERE uc.effective_date = :snapshot_date AND uc.source = 'nightly_sync'
  AND NOT EXISTS (SELECT 1 FROM service_unit_counts p
                  WHERE p.service_id = uc.service_id AND p.snapshot_date = :previous_date)
