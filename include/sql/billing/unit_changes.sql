-- The unit changes of the contract's services effective from :since through :as_of, in the field
-- order of billing.model.UnitChange.
SELECT c.change_id, c.service_id, c.effective_date, c.units_before, c.units_after, c.delta, c.source,
       c.detected_at
FROM unit_changes c
JOIN services s ON s.service_id = c.service_id
WHERE s.contract_id = :contract_id AND c.effective_date >= :since AND c.effective_date <= :as_of
