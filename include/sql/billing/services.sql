-- The contract's services as of :as_of, with their first observations on or before it: the
-- first count of a good (complete) snapshot and the first Get Units Now reading, which is the
-- last press of the first day pressed (a later press the same day supersedes an earlier one, as
-- in the unit history: ``changes.history.last_press_per_day``) (the earlier of the two sets an
-- rmm service's starting units); the units before its first unit change are read by
-- first_changes.sql. Bounded by :as_of, a run bills what a run on that night
-- would have known: synced ahead (coalesced asset events, a backfill) it does not start a
-- service at a count of a later night. An rmm service with no observation by then starts at 0
-- (its services.units is a later observation). Index probes
-- on the primary and unique keys: the daily history is never scanned. The snapshot's status
-- is a scalar subquery per count, walked in date order, so the first good count costs one or
-- two probes (as a join the planner would probe every snapshot date of the service). The date
-- of the first good count only matters beside a reading: it is looked up only then (each
-- lookup is a walk of its own).
-- Unordered: the caller sorts (an ORDER BY here makes PostgreSQL walk every service).
SELECT s.service_id, s.name, s.unit_price, s.start_date, s.end_date, s.units_source,
       CASE WHEN s.units_source = 'manual' THEN s.units ELSE 0 END AS configured_units,
       (SELECT u.units FROM service_unit_counts u
         WHERE u.service_id = s.service_id AND u.snapshot_date <= :as_of
           AND (SELECT r.status FROM sync_runs r WHERE r.snapshot_date = u.snapshot_date) = 'complete'
         ORDER BY u.snapshot_date
         LIMIT 1) AS first_count,
       CASE WHEN EXISTS (SELECT 1 FROM units_now_readings g
                         WHERE g.service_id = s.service_id AND g.observed_date <= :as_of)
       THEN (SELECT u.snapshot_date FROM service_unit_counts u
              WHERE u.service_id = s.service_id AND u.snapshot_date <= :as_of
                AND (SELECT r.status FROM sync_runs r WHERE r.snapshot_date = u.snapshot_date) = 'complete'
              ORDER BY u.snapshot_date
              LIMIT 1)
       END AS first_count_date,
       (SELECT g.units FROM units_now_readings g
         WHERE g.service_id = s.service_id
           AND g.observed_date = (SELECT MIN(f.observed_date) FROM units_now_readings f
                                   WHERE f.service_id = s.service_id AND f.observed_date <= :as_of)
         ORDER BY g.observed_at DESC LIMIT 1) AS first_reading,
       (SELECT g.observed_date FROM units_now_readings g
         WHERE g.service_id = s.service_id AND g.observed_date <= :as_of
         ORDER BY g.observed_at LIMIT 1) AS first_reading_date
FROM services s
WHERE s.contract_id = :contract_id
