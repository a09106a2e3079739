-- Pending lines (billing_review) with their service's name, optionally for one contract.
SELECT r.contract_id, r.posting, r.line_id, r.service_id, s.name AS service_name, r.kind, r.period_start,
       r.period_end, r.units, r.unit_price, r.days, r.days_in_period, r.amount, r.change_id,
       r.adjusts_line_id, r.description, r.as_of, c.currency
FROM billing_review r
JOIN services s ON s.service_id = r.service_id
JOIN contracts c ON c.contract_id = r.contract_id
WHERE CAST(:contract_id AS TEXT) IS NULL OR r.contract_id = :contract_id
ORDER BY r.contract_id, r.service_id, r.period_start, r.kind, r.line_id
