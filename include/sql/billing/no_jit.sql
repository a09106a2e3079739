-- PostgreSQL, for the rest of the billing transaction: no JIT compilation. The per-contract
-- queries are index probes of a few milliseconds, but the planner's estimate for the first
-- good count (a status per count it cannot estimate) crosses jit_above_cost, and compiling
-- would cost ten times the query.
SET LOCAL jit = off
