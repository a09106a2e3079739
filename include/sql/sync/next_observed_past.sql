-- How far a re-derivation that ends at the good snapshot :upper must reach: a service observed
-- by then but not counted at :upper (its view was not landed, its scope was broken) has its next
-- change at its next observation, whose 'before' the window may have moved. Returns the latest
-- first good count after :upper among such services (NULL: none), and whether one of them has
-- a Get Units Now reading after :upper but no good count after it (the window then runs to the
-- end). Per service, index probes on the (service_id, snapshot_date) key walked in date order:
-- services counted at :upper, or never observed by then, cost one probe each.
WITH uncounted AS (
    SELECT s.service_id
    FROM services s
    WHERE NOT EXISTS (SELECT 1 FROM service_unit_counts u
                      WHERE u.service_id = s.service_id AND u.snapshot_date = :upper)
      AND (EXISTS (SELECT 1 FROM service_unit_counts u
                   WHERE u.service_id = s.service_id AND u.snapshot_date < :upper)
           OR EXISTS (SELECT 1 FROM units_now_readings g
                      WHERE g.service_id = s.service_id AND g.observed_date <= :upper))
),
next_count AS (
    SELECT n.service_id,
           (SELECT c.snapshot_date FROM service_unit_counts c
             WHERE c.service_id = n.service_id AND c.snapshot_date > :upper
               AND (SELECT r.status FROM sync_runs r WHERE r.snapshot_date = c.snapshot_date) = 'complete'
             ORDER BY c.snapshot_date
             LIMIT 1) AS snapshot_date
    FROM uncounted n
)
SELECT MAX(snapshot_date) AS reach,
       MAX(CASE WHEN snapshot_date IS NULL AND EXISTS (
               SELECT 1 FROM units_now_readings g
               WHERE g.service_id = next_count.service_id AND g.observed_date >= :upper)
           THEN 1 ELSE 0 END) AS to_the_end
FROM next_count
