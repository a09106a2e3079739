-- The contract's services with their first observations: the first count of a good snapshot
-- and the first Get Units Now reading (the earlier of the two sets an rmm service's starting
-- units). Index probes on the primary keys: the daily history is never scanned.
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
         WHERE g.service_id = s.service_id ORDER BY g.observed_at LIMIT 1) AS first_reading_date
FROM services s
WHERE s.contract_id = :contract_id
ORDER BY s.service_id
