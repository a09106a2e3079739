-- The latest snapshot date whose nightly sync has concluded (SPEC §5 "Billing horizon"):
-- complete, a recorded gap, or a quarantined snapshot that was discarded. A date still
-- quarantined or failed may yet change, so it does not count.
SELECT MAX(snapshot_date) AS snapshot_date
FROM sync_runs
WHERE status IN ('complete', 'gap', 'discarded')
