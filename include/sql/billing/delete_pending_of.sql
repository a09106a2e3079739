-- The pending lines of some of the contract's services (a run that keeps the others'):
-- :services is expanded into a list.
DELETE FROM billing_pending WHERE contract_id = :contract_id AND service_id IN :services
