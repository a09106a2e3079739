INSERT INTO billing_settled (contract_id, settled_before, as_of, inputs_digest)
VALUES (:contract_id, :settled_before, :as_of, :inputs_digest)
