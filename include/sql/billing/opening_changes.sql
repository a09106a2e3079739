-- The units a walk from :since opens each of the contract's services with: its changes on the
-- last date before :since on which it changed (the last of them in ``timeline.ordered`` order
-- sets them), in the field order of billing.model.UnitChange. Two probes of the unit_changes
-- key per service: the history before :since is not read.
SELECT c.change_id, c.service_id, c.effective_date, c.units_before, c.units_after, c.delta, c.source,
       c.detected_at
FROM services s
JOIN unit_changes c ON c.service_id = s.service_id
 AND c.effective_date = (SELECT MAX(p.effective_date) FROM unit_changes p
                          WHERE p.service_id = s.service_id AND p.effective_date < :since)
WHERE s.contract_id = :contract_id
