-- The changes of each of the contract's services on the date of its first unit change (an rmm
-- service's: on or before :as_of; a manual service's: whatever its date, as services.units
-- already holds a future-dated change's units), in the field order of billing.model.UnitChange:
-- the first of them in ``timeline.ordered`` order started from the units the service had before
-- any change (the order of one date's changes is that one rule, not repeated here). Two probes
-- of the unit_changes key per service: the history after the first date is not read.
SELECT c.change_id, c.service_id, c.effective_date, c.units_before, c.units_after, c.delta, c.source,
       c.detected_at
FROM services s
JOIN unit_changes c ON c.service_id = s.service_id
 AND c.effective_date = (SELECT MIN(p.effective_date) FROM unit_changes p
                          WHERE p.service_id = s.service_id
                            AND (s.units_source = 'manual' OR p.effective_date <= :as_of))
WHERE s.contract_id = :contract_id
