-- The agents behind the lines of a posted invoice, as posted (invoice_line_agents, migration 0023).
SELECT a.line_id, a.agent_id, a.agent_name, a.event
FROM invoice_line_agents a
JOIN invoice_lines l ON l.line_id = a.line_id
WHERE l.invoice_id = :invoice_id
ORDER BY a.line_id, a.event, a.agent_id
