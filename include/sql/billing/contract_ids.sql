-- Every contract, in a stable order (a billing run visits them one transaction each).
SELECT contract_id FROM contracts ORDER BY contract_id
