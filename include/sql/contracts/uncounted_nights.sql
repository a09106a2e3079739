-- The counted nights up to :today (complete, and those in history_dates: quarantined until
-- discarded, or counted and not yet diffed, which may bill later without being counted again) on which a
-- counted service was to be counted and has no count. Today's night (synced before the apply) only
-- for a service active before today: one starting today is first counted by the next night, as any
-- new service; one active before would have its change of today found a night late. apply runs it before and after
-- writing a plan, and warns of the nights the plan added (a service or contract starting
-- earlier or ending later). "Was to be counted" is
-- the count's own rule, sync/agent_counted_services.sql, put in place of the marker below with
-- the night as its date (contracts/apply.py), so the two never differ.
-- :services: the services to look at (those the plan touched).
SELECT t.service_id, t.vsa_view_id, r.snapshot_date
FROM services t
JOIN contracts k ON k.contract_id = t.contract_id
JOIN (SELECT snapshot_date FROM history_dates
      UNION SELECT snapshot_date FROM sync_runs WHERE status = 'complete') r
  ON r.snapshot_date < :today
  OR (r.snapshot_date = :today AND t.start_date < :today AND k.start_date < :today)
WHERE t.service_id IN :services
  AND EXISTS (/*counted_services_of_the_night*/ AND s.service_id = t.service_id)
  AND NOT EXISTS (SELECT 1 FROM service_unit_counts u
                  WHERE u.service_id = t.service_id AND u.snapshot_date = r.snapshot_date)
ORDER BY t.service_id, r.snapshot_date
