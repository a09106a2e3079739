-- The agents behind the unit changes of a contract's services (SPEC §6 unit_change_agents).
SELECT a.change_id, a.agent_id, a.agent_name, a.event
FROM unit_change_agents a
JOIN unit_changes c ON c.change_id = a.change_id
JOIN services s ON s.service_id = c.service_id
WHERE s.contract_id = :contract_id
ORDER BY a.change_id, a.event, a.agent_id
