-- The contract's services with their first count (the starting units of rmm services).
-- One index probe per service on service_unit_counts' primary key: the daily history is
-- never scanned.
SELECT s.service_id, s.name, s.unit_price, s.units, s.start_date, s.end_date,
       (SELECT u.units
          FROM service_unit_counts u
         WHERE u.service_id = s.service_id
         ORDER BY u.snapshot_date
         LIMIT 1) AS first_count
FROM services s
WHERE s.contract_id = :contract_id
ORDER BY s.service_id
