-- The lines of one invoice with their service's name as posted, in invoice order.
SELECT l.line_id, l.service_id, l.service_name, l.kind, l.period_start, l.period_end,
       l.units, l.unit_price, l.days, l.days_in_period, l.amount, l.change_id,
       l.adjusts_line_id, l.description
FROM invoice_lines l
WHERE l.invoice_id = :invoice_id
ORDER BY l.service_id, l.period_start, l.kind, l.line_key
