-- The first day any contract starts (NULL without contracts): where a billing run's nights begin.
SELECT MIN(start_date) AS start_date FROM contracts
