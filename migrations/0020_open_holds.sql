-- The holds still open, kept beside the append-only ledger (issue 13, decision 0029).
--
-- A hold is a 'pending' transfer that stays one: its post or void is another row. So "which holds
-- are open" could only be asked as every pending row of some expiry range without a resolution row,
-- and both questions the gateway asks in the background read that way: the expiry sweep (every 5 s
-- in every worker, holds that expired in the last ten minutes) and the open-hold gauges (every 15 s,
-- holds of the last two hours with an hour's TTL). Their cost grew with the rate of holds, not with
-- how many were open: at 500,000 holds in those two hours (70 a second) a count took ~0.4 s and a
-- sweep ~0.4 s; at the seed's 1,000 AI calls a second they would keep PostgreSQL busier than the
-- calls themselves, and the sweep's hourly look at the whole history longer still.
--
-- open_holds holds one row per open hold, written by a trigger in the transaction that appends the
-- hold and removed in the one that appends its resolution, whichever path writes them (ledger_batch,
-- ledger_move / ledger_resolve, the expiry sweep). Both questions now read only open holds.
-- `tollgate reconcile` checks the table against the transfers (ledger.reconcile), so every money
-- test checks the trigger too. The trigger is per statement: one ledger_batch call, one firing.

-- First, before any statement takes a snapshot: the lock keeps writers of transfers out until this
-- migration commits, so the table is filled with exactly the holds open then, whatever the default
-- isolation (under REPEATABLE READ a snapshot taken before the lock would miss a hold committed while
-- the lock was awaited). Readers go on; writers wait for the fill (0.6 s at 500,000 holds). One lock,
-- taken once: no upgrade within the transaction for a writer to deadlock with.
LOCK TABLE transfers IN SHARE ROW EXCLUSIVE MODE;

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

-- The holds open now (the lock above: none is appended or resolved until the trigger is in place).
INSERT INTO open_holds (hold_id, expires_at, amount_micro)
SELECT p.id, p.expires_at, p.amount_micro FROM transfers p
WHERE p.phase = 'pending' AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = p.id);

-- transfers_open_holds_idx (pending rows by expiry) stays for now: gateways of the previous release,
-- still serving while this one rolls out, read it. A later migration drops it (decision 0029).
