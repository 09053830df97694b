-- The money functions plan index probes, whatever the tables' size when their plans were cached
-- (issue 13, decision 0030).
--
-- PL/pgSQL keeps a statement's plan while the connection lives; after five runs it is a generic
-- plan, costed on the statistics of that moment, and only an ANALYZE of a table it reads replaces
-- it. A gateway that starts on small tables (a new deployment, a bench, a test) caches plans that
-- read whole tables: ledger_batch looked up the holds it resolves by a sequential scan of
-- transfers. Until autovacuum analyzes the grown table (after 10% more rows, up to a minute's nap
-- later) every batch of those connections reads every transfer: measured, a connection warmed on
-- 200 users and then run on 155,000 transfers written within 20 s spent 6,010 µs of PostgreSQL CPU
-- per settlement against 566 µs for a connection opened after the growth (decision 0030).
--
-- Each money function plans as if sequential scans were dear (`enable_seqscan = off` in its own
-- SET clause: only its statements, the triggers it fires and the checks of the keys it writes
-- see it). Every table these functions read has an index for what they look up, so their plans
-- are index probes at any size; a statement with no such index still runs, on the scan the
-- setting only made dearer. Nothing else in the database changes. A later CREATE OR REPLACE of
-- one of them drops its SET clause: write the setting into the new definition (a test checks all
-- seven).

ALTER FUNCTION ledger_batch(jsonb) SET enable_seqscan = off;
ALTER FUNCTION ledger_move SET enable_seqscan = off;
ALTER FUNCTION ledger_move_within_budgets SET enable_seqscan = off;
ALTER FUNCTION ledger_resolve SET enable_seqscan = off;
ALTER FUNCTION ledger_debt SET enable_seqscan = off;
ALTER FUNCTION follow_open_holds() SET enable_seqscan = off;
ALTER FUNCTION budget_hold_resolved() SET enable_seqscan = off;
