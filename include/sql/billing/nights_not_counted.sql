-- The nights from :first_day through :as_of whose counts no billing run reads: quarantined (until
-- a person releases them) or failed (until they run again). A preview's forecast is without them.
SELECT snapshot_date, status FROM sync_runs
WHERE snapshot_date >= :first_day AND snapshot_date <= :as_of AND status IN ('quarantined', 'failed')
ORDER BY snapshot_date
