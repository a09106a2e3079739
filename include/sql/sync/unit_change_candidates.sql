-- For every service counted on :snapshot_date: its units now and the units just before this
-- observation, i.e. the latest of (its count at the previous good snapshot :previous_date,
-- a Get Units Now reading taken after that snapshot's observation and before this one).
-- units_before IS NULL means this is the service's first count: it sets units, no change.
SELECT cur.service_id,
       cur.units AS units_after,
       COALESCE(
           (SELECT r.units FROM units_now_readings r
            WHERE r.service_id = cur.service_id
              AND r.observed_at > :previous_observed_at AND r.observed_at < :observed_at
            ORDER BY r.observed_at DESC
            LIMIT 1),
           prev.units
       ) AS units_before
FROM service_unit_counts cur
LEFT JOIN service_unit_counts prev
  ON prev.service_id = cur.service_id AND prev.snapshot_date = :previous_date
WHERE cur.snapshot_date = :snapshot_date
