-- ledger_batch joins by index probes, whatever the tables' size when its plans were made (issue 13,
-- decision 0032).
--
-- Since migration 0023 every statement of ledger_batch runs on a generic plan made once per
-- connection. Two of them join a table with the batch's arrays: the updates of the accounts and of
-- the budgets (`FROM unnest(...) s WHERE a.id = s.account_id`), and the rare look-up of step 4b.
-- Planned on a small table (a new deployment, a bench), a hash or merge join reading the whole table
-- through its index can be the cheaper plan; kept for the connection's life it would read every
-- account on every batch once the table has grown (decision 0030 saw the same with sequential
-- scans). Before 0023 the accounts' update was planned anew on each call and so never kept such a
-- plan, at 60-90 µs of PostgreSQL's CPU per batch. With hash and merge joins made dear, as
-- sequential scans already are, the joins are nested loops probing each row's primary key: the
-- plan they need at any size. No statement of the function wants a hash or merge join: step 3's
-- look-ups are LATERAL probes, steps 1 and 2 read by `= ANY(...)`, the rest read only the arrays.
-- The settings apply to the function's own statements and to the triggers its writes fire.
--
-- As 0021's and 0023's settings, these live in the function's definition: a later CREATE OR REPLACE
-- of ledger_batch must write all four SET clauses (a test reads them back).

ALTER FUNCTION ledger_batch(jsonb) SET enable_hashjoin = off;
ALTER FUNCTION ledger_batch(jsonb) SET enable_mergejoin = off;
