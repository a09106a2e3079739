SELECT line_key, service_id, kind, period_start, period_end, units, unit_price, days,
       days_in_period, amount, change_id, adjusts_line_id, description, as_of
FROM billing_pending
WHERE contract_id = :contract_id
