-- The contract's posted ledger from the month :since (a line and its adjustments are of one
-- month) netted per original (normal or prorated) line: its key, its service, and its
-- units and amount in ten-thousandths (integers: exact on both engines) with the adjustments
-- linked to it added. One pass over the contract's lines, grouped by the line each one counts
-- for. What a night's expected lines are compared with (posted_lines, the full rows, is read
-- only when some line differs). Adjustments of a line that is not there come back under a
-- NULL key, which no expected line matches: the full ledger is then read, and refuses them.
SELECT MAX(CASE WHEN kind <> 'adjustment' THEN line_key END) AS line_key,
       MAX(service_id) AS service_id,
       SUM(units) AS units,
       CAST(SUM(amount_e4) AS BIGINT) AS amount_e4
FROM invoice_lines
WHERE contract_id = :contract_id AND period_start >= :since
GROUP BY CASE WHEN kind = 'adjustment' THEN adjusts_line_id ELSE line_id END
