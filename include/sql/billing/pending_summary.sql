-- The contract's pending lines in sum: how many, their total in ten-thousandths (an integer:
-- exact on both engines), and the first day of the earliest.
SELECT COUNT(*) AS lines, CAST(SUM(amount_e4) AS BIGINT) AS total_e4, MIN(period_start) AS first_day
FROM billing_pending
WHERE contract_id = :contract_id
