-- The contract's services with their first observations: the first count of a good snapshot
-- and the first Get Units Now reading, which is the last press of the first day pressed (a
-- later press the same day supersedes an earlier one, as in the unit history:
-- ``changes.history.last_press_per_day``) (the earlier of the two sets an rmm service's starting
-- units), and the units before its first unit change, whatever its date (a manual service's
-- starting units: services.units already holds a future-dated change's units). Index probes
-- on the primary and unique keys: the daily history is never scanned. The snapshot's status
-- is a scalar subquery per count, walked in date order, so the first good count costs one or
-- two probes (as a join the planner would probe every snapshot date of the service). The date
-- of the first good count only matters beside a reading: it is looked up only then (each
-- lookup is a walk of its own).
-- Unordered: the caller sorts (an ORDER BY here makes PostgreSQL walk every service).
SELECT s.service_id, s.name, s.unit_price, s.units, s.start_date, s.end_date,
       (SELECT u.units FROM service_unit_counts u
         WHERE u.service_id = s.service_id
           AND (SELECT r.status FROM sync_runs r WHERE r.snapshot_date = u.snapshot_date) = 'complete'
         ORDER BY u.snapshot_date
         LIMIT 1) AS first_count,
       CASE WHEN EXISTS (SELECT 1 FROM units_now_readings g WHERE g.service_id = s.service_id)
       THEN (SELECT u.snapshot_date FROM service_unit_counts u
              WHERE u.service_id = s.service_id
                AND (SELECT r.status FROM sync_runs r WHERE r.snapshot_date = u.snapshot_date) = 'complete'
              ORDER BY u.snapshot_date
              LIMIT 1)
       END AS first_count_date,
       (SELECT g.units FROM units_now_readings g
         WHERE g.service_id = s.service_id
           AND g.observed_date = (SELECT MIN(f.observed_date) FROM units_now_readings f
                                   WHERE f.service_id = s.service_id)
         ORDER BY g.observed_at DESC LIMIT 1) AS first_reading,
       (SELECT g.observed_date FROM units_now_readings g
         WHERE g.service_id = s.service_id ORDER BY g.observed_at LIMIT 1) AS first_reading_date,
       (SELECT c.units_before FROM unit_changes c
         WHERE c.service_id = s.service_id
         ORDER BY c.effective_date, c.detected_at, c.change_id LIMIT 1) AS first_change_before
FROM services s
WHERE s.contract_id = :contract_id
