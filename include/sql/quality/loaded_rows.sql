-- Rows loaded for one snapshot date per landed file (the file's name in the manifest), for the
-- gate's check that what was loaded is what was landed. One line per source table.
SELECT 'orgs.jsonl.gz' AS landed_file, COUNT(*) AS loaded FROM vsa_orgs WHERE snapshot_date = :d
UNION ALL
SELECT 'machine_groups.jsonl.gz', COUNT(*) FROM vsa_machine_groups WHERE snapshot_date = :d
UNION ALL
SELECT 'agents.jsonl.gz', COUNT(*) FROM vsa_agents WHERE snapshot_date = :d
UNION ALL
SELECT 'views.jsonl.gz', COUNT(*) FROM vsa_views WHERE snapshot_date = :d
UNION ALL
SELECT 'agents_in_view/' || view_id || '.jsonl.gz', COUNT(*) FROM vsa_view_members WHERE snapshot_date = :d GROUP BY view_id
