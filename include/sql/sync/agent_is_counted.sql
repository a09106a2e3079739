-- Whether service ``s`` counts agent ``a`` by the service's exclusions (SPEC 4.1): an agent that
-- never checked in (Online = 199) and an agent whose last check-in is more than N days before
-- the date (``days_since_checkin``, made by the load's rule ``sync.load.days_since_checkin``).
-- Written once, included by the night's count (service_agents_counted.sql) and by Get Units Now
-- (units_now_counted.sql), so the button and the night cannot disagree about an agent.
NOT (s.exclude_never_checked_in AND COALESCE(a.online, 0) = 199)
AND (s.exclude_offline_days IS NULL OR a.days_since_checkin <= s.exclude_offline_days)
