-- The holds still open, kept beside the append-only ledger (issue 13, decision 0029).
--
-- A hold is a 'pending' transfer that stays one: its post or void is another row. So "which holds
-- are open" could only be asked as every pending row of some expiry range without a resolution row,
-- and both questions the gateway asks in the background read that way: the expiry sweep (every 5 s
-- in every worker, holds that expired in the last ten minutes) and the open-hold gauges (every 15 s,
-- holds of the last two hours with an hour's TTL). Their cost grew with the rate of holds, not with
-- how many were open: at 500,000 holds in those two hours (70 a second) a count took ~0.5 s and a
-- sweep ~0.3 s; at the seed's 1,000 AI calls a second they would keep PostgreSQL busier than the
-- calls themselves, and the sweep's hourly look at the whole history longer still.
--
-- open_holds holds one row per open hold, written by a trigger in the transaction that appends the
-- hold and removed in the one that appends its resolution, whichever path writes them (ledger_batch,
-- ledger_move / ledger_resolve, the expiry sweep). Both questions now read only open holds.
-- `tollgate reconcile` checks the table against the transfers (ledger.reconcile), so every money
-- test checks the trigger too. The trigger is per statement: one ledger_batch call, one firing.

CREATE TABLE open_holds (
    hold_id      bigint PRIMARY KEY,
    expires_at   timestamptz NOT NULL,
    amount_micro bigint NOT NULL
);
CREATE INDEX open_holds_expiry_idx ON open_holds (expires_at, hold_id);

CREATE FUNCTION follow_open_holds() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO open_holds (hold_id, expires_at, amount_micro)
    SELECT a.id, a.expires_at, a.amount_micro FROM appended a WHERE a.phase = 'pending';
    DELETE FROM open_holds o USING appended a WHERE a.pending_id IS NOT NULL AND o.hold_id = a.pending_id;
    RETURN NULL;
END $$;

CREATE TRIGGER transfers_follow_open_holds AFTER INSERT ON transfers
    REFERENCING NEW TABLE AS appended
    FOR EACH STATEMENT EXECUTE FUNCTION follow_open_holds();

-- The holds open now. CREATE TRIGGER above took a lock that keeps writers of transfers out until
-- this migration commits: no hold is appended or resolved between this read and the trigger.
INSERT INTO open_holds (hold_id, expires_at, amount_micro)
SELECT p.id, p.expires_at, p.amount_micro FROM transfers p
WHERE p.phase = 'pending' AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = p.id);

-- Nothing reads pending rows by expiry any more: one index fewer on every hold.
DROP INDEX transfers_open_holds_idx;
