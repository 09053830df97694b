-- Revenue in shards (issue 13, decision 0021 "Lanes"). Every AI hold credited the one revenue
-- account, so every ledger batch locked its row and two batches could never run at once. A
-- Batcher now sends the items of its users in lanes (users by id modulo the lanes), and an AI hold
-- credits the revenue shard of its user (ledger.accounts.revenue_shard: id modulo 4): batches of
-- different lanes lock no row in common and run side by side. The shards are system accounts of
-- kind 'revenue'; 'revenue' itself is shard 0 and still takes every other credit.
INSERT INTO accounts (kind, code) VALUES ('revenue', 'revenue-1'), ('revenue', 'revenue-2'), ('revenue', 'revenue-3');
