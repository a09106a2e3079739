-- The machine groups each counted service's scope covers on :snapshot_date: its machine group
-- and, with include_subgroups, every group below it through the ParentMachineGroupId tree of the
-- date. Kept as the temporary table counted_groups (after counted_scopes) and merged into
-- service_group_history.
WITH RECURSIVE scope_groups (service_id, machine_group_id) AS (
    SELECT s.service_id, g.machine_group_id
    FROM counted_scopes s
    JOIN vsa_machine_groups g
      ON g.snapshot_date = :snapshot_date AND g.machine_group_id = s.vsa_machine_group_id
    UNION
    SELECT sg.service_id, child.machine_group_id
    FROM scope_groups sg
    JOIN services s ON s.service_id = sg.service_id AND s.include_subgroups
    JOIN vsa_machine_groups child
      ON child.snapshot_date = :snapshot_date AND child.parent_machine_group_id = sg.machine_group_id
)
SELECT service_id, machine_group_id FROM scope_groups
