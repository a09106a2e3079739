-- The contract's services with their first observations: the first count of a good snapshot
-- and the first Get Units Now reading (the earlier of the two sets an rmm service's starting
-- units), and the units before its first unit change, whatever its date (a manual service's
-- starting units: services.units already holds a future-dated change's units). Index probes
-- on the primary and unique keys: the daily history is never scanned.
SELECT s.service_id, s.name, s.unit_price, s.units, s.start_date, s.end_date,
       (SELECT u.units
          FROM service_unit_counts u
          JOIN sync_runs r ON r.snapshot_date = u.snapshot_date AND r.status = 'complete'
         WHERE u.service_id = s.service_id
         ORDER BY u.snapshot_date
         LIMIT 1) AS first_count,
       (SELECT u.snapshot_date
          FROM service_unit_counts u
          JOIN sync_runs r ON r.snapshot_date = u.snapshot_date AND r.status = 'complete'
         WHERE u.service_id = s.service_id
         ORDER BY u.snapshot_date
         LIMIT 1) AS first_count_date,
       (SELECT g.units FROM units_now_readings g
         WHERE g.service_id = s.service_id ORDER BY g.observed_at LIMIT 1) AS first_reading,
       (SELECT g.observed_date FROM units_now_readings g
         WHERE g.service_id = s.service_id ORDER BY g.observed_at LIMIT 1) AS first_reading_date,
       (SELECT c.units_before FROM unit_changes c
         WHERE c.service_id = s.service_id
         ORDER BY c.effective_date, c.detected_at, c.change_id LIMIT 1) AS first_change_before
FROM services s
WHERE s.contract_id = :contract_id
ORDER BY s.service_id
