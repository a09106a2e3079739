-- The agents behind a posted line's unit change, as they are when it is posted (migration 0023):
-- a later re-derivation of the change rewrites unit_change_agents, never what the invoice showed.
INSERT INTO invoice_line_agents (line_id, agent_id, agent_name, event)
SELECT :line_id, agent_id, agent_name, event
FROM unit_change_agents
WHERE change_id = :change_id
