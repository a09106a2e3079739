SELECT p.line_key, p.service_id, p.kind, p.period_start, p.period_end, p.units, p.unit_price,
       p.days, p.days_in_period, p.amount, p.change_id, p.adjusts_line_id, p.description, r.as_of
FROM billing_pending p
LEFT JOIN billing_pending_runs r ON r.contract_id = p.contract_id
WHERE p.contract_id = :contract_id
