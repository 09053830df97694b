-- ledger_batch plans each statement once per connection (issue 13, decision 0032).
--
-- PostgreSQL's plan cache gives a statement its own plan for its first five runs, then keeps a
-- generic plan unless that one is costed dearer than the statement's own plans were. ledger_batch's
-- final UPDATE of the accounts (a join with the unnested arrays of sums) lost that comparison on
-- every connection: a generic plan costs unnest() at its default row count, a plan of its own knows
-- the arrays. So it was planned again on every call, ~60-90 µs of PostgreSQL's CPU per batch
-- (pg_stat_statements, track_planning: as many plans as calls; every other statement of the
-- function kept its generic plan). Its generic plan is the one it needs (a nested loop probing
-- accounts_pkey per changed account, sequential scans being dear since migration 0021), so the
-- function asks for generic plans outright. Measured in alternating slices, one database: -7% of
-- PostgreSQL's CPU per AI call at 4 calls in flight (small batches, where the planning is paid by few
-- items), no change at 64.
--
-- As 0021's setting, this one lives in the function's definition: a later CREATE OR REPLACE of
-- ledger_batch must write both SET clauses (a test reads them back).

ALTER FUNCTION ledger_batch(jsonb) SET plan_cache_mode = force_generic_plan;
