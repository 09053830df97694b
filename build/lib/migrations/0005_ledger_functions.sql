-- The ledger's two writes as functions, so each is one round trip: a move (posted, or a hold) and
-- the resolution of a hold_row. Outside a transaction the call is its own transaction, so the account
-- rows stay locked only while the function runs and commits, not across client round trips.
--
-- The steps and their order are those ledger/transfers.py used to send one statement at a time
-- (decision 0012). A refusal is not raised but returned as `status`, with nothing written, so a
-- caller's enclosing transaction stays usable without a savepoint (a purchase goes on after a
-- referral bonus whose key is taken). ledger/transfers.py turns each status into its exception:
--
--   ok                    `transfer` is the new transfer
--   replayed              `transfer` was written earlier with this key and the same request hash
--   conflict              the key was used for another request             -> IdempotencyConflict
--   unknown_account       `detail`: the missing account ids, comma-separated -> LedgerError
--   insufficient_balance  the debited user account would go below its overdraft -> InsufficientBalance
--   hold_not_found        no transfer with that id, or it is not a hold     -> HoldNotFound
--   hold_resolved         the hold was already posted or voided             -> HoldResolved
--   invalid_amount        `detail`: the held amount                          -> InvalidAmount
--   hold_expired          a post after the expiry (voids are allowed)        -> HoldExpired
--
-- Under READ COMMITTED every statement of a volatile function takes a fresh snapshot, so the
-- checks after the lock see whatever a concurrent twin committed while we waited, as the separate
-- statements did. Accounts are locked `ORDER BY id FOR UPDATE` (rows are locked after the sort),
-- so two transfers never wait on each other in a cycle.

-- Move money now (p_phase 'posted') or hold it until p_expires_at (p_phase 'pending').
CREATE FUNCTION ledger_move(
    p_key text, p_request_hash bytea, p_debit bigint, p_credit bigint, p_amount bigint,
    p_phase text, p_kind text, p_expires_at timestamptz, p_user_id bigint, p_description text,
    p_metadata jsonb, p_now timestamptz,
    OUT status text, OUT detail text, OUT transfer transfers)
LANGUAGE plpgsql AS $$
DECLARE
    account accounts;
    debit_account accounts;
    credit_found boolean := false;
BEGIN
    -- A replay needs no lock.
    SELECT * INTO transfer FROM transfers WHERE idempotency_key = p_key;
    IF FOUND THEN
        status := CASE WHEN transfer.request_hash = p_request_hash THEN 'replayed' ELSE 'conflict' END;
        RETURN;
    END IF;
    FOR account IN SELECT * FROM accounts WHERE id IN (p_debit, p_credit) ORDER BY id FOR UPDATE LOOP
        IF account.id = p_debit THEN
            debit_account := account;
        ELSE
            credit_found := true;
        END IF;
    END LOOP;
    IF debit_account.id IS NULL OR NOT credit_found THEN
        status := 'unknown_account';
        detail := concat_ws(',', CASE WHEN debit_account.id IS NULL THEN p_debit END,
                            CASE WHEN NOT credit_found THEN p_credit END);
        RETURN;
    END IF;
    -- Re-read after locking: a concurrent twin with this key has committed by now, if any.
    SELECT * INTO transfer FROM transfers WHERE idempotency_key = p_key;
    IF FOUND THEN
        status := CASE WHEN transfer.request_hash = p_request_hash THEN 'replayed' ELSE 'conflict' END;
        RETURN;
    END IF;
    IF debit_account.kind = 'user'
       AND debit_account.credits_posted::numeric - debit_account.debits_posted
           - debit_account.debits_pending - p_amount < -debit_account.overdraft_micro THEN
        status := 'insufficient_balance';
        RETURN;
    END IF;
    INSERT INTO transfers (idempotency_key, request_hash, debit_account_id, credit_account_id,
                           amount_micro, phase, kind, pending_id, expires_at, user_id, description,
                           metadata, created_at)
    VALUES (p_key, p_request_hash, p_debit, p_credit, p_amount, p_phase, p_kind, NULL, p_expires_at,
            p_user_id, p_description, p_metadata, p_now)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING * INTO transfer;
    IF NOT FOUND THEN
        -- A transfer sharing no account with this one took the key while we held our locks: only
        -- the unique key made the two meet, and the insert waited for it to commit.
        SELECT * INTO STRICT transfer FROM transfers WHERE idempotency_key = p_key;
        status := CASE WHEN transfer.request_hash = p_request_hash THEN 'replayed' ELSE 'conflict' END;
        RETURN;
    END IF;
    UPDATE accounts SET
        debits_posted = debits_posted + CASE WHEN id = p_debit AND p_phase = 'posted' THEN p_amount ELSE 0 END,
        credits_posted = credits_posted + CASE WHEN id = p_credit AND p_phase = 'posted' THEN p_amount ELSE 0 END,
        debits_pending = debits_pending + CASE WHEN id = p_debit AND p_phase = 'pending' THEN p_amount ELSE 0 END,
        credits_pending = credits_pending + CASE WHEN id = p_credit AND p_phase = 'pending' THEN p_amount ELSE 0 END
    WHERE id IN (p_debit, p_credit);
    status := 'ok';
END $$;

-- Post a hold (p_phase 'post_pending': at most the held amount, the rest is released) or void it
-- (p_phase 'void_pending'). A post with p_post NULL is an amount the caller found invalid (not an
-- integer, or out of range): refused as invalid_amount at the point where that check belongs.
-- p_expiring lets a post through after the hold's expiry.
CREATE FUNCTION ledger_resolve(
    p_key text, p_request_hash bytea, p_hold_id bigint, p_phase text, p_post bigint,
    p_expiring boolean, p_metadata jsonb, p_now timestamptz,
    OUT status text, OUT detail text, OUT transfer transfers)
LANGUAGE plpgsql AS $$
DECLARE
    hold_row transfers;
    account accounts;
    found_count integer := 0;
    posting boolean := p_phase = 'post_pending';
    posted bigint;
BEGIN
    SELECT * INTO transfer FROM transfers WHERE idempotency_key = p_key;
    IF FOUND THEN
        status := CASE WHEN transfer.request_hash = p_request_hash THEN 'replayed' ELSE 'conflict' END;
        RETURN;
    END IF;
    SELECT * INTO hold_row FROM transfers WHERE id = p_hold_id;
    IF NOT FOUND OR hold_row.phase <> 'pending' THEN
        status := 'hold_not_found';
        RETURN;
    END IF;
    FOR account IN SELECT * FROM accounts WHERE id IN (hold_row.debit_account_id, hold_row.credit_account_id)
                   ORDER BY id FOR UPDATE LOOP
        found_count := found_count + 1;
    END LOOP;
    IF found_count < 2 THEN  -- not possible while transfers reference accounts; checked as before
        status := 'unknown_account';
        detail := (SELECT string_agg(wanted::text, ',' ORDER BY wanted)
                   FROM unnest(ARRAY[hold_row.debit_account_id, hold_row.credit_account_id]) AS wanted
                   WHERE NOT EXISTS (SELECT 1 FROM accounts WHERE id = wanted));
        RETURN;
    END IF;
    SELECT * INTO transfer FROM transfers WHERE idempotency_key = p_key;
    IF FOUND THEN
        status := CASE WHEN transfer.request_hash = p_request_hash THEN 'replayed' ELSE 'conflict' END;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM transfers WHERE pending_id = p_hold_id) THEN
        status := 'hold_resolved';
        RETURN;
    END IF;
    IF posting THEN
        IF p_post IS NULL OR p_post < 0 OR p_post > hold_row.amount_micro THEN
            status := 'invalid_amount';
            detail := hold_row.amount_micro::text;
            RETURN;
        END IF;
        IF hold_row.expires_at <= p_now AND NOT p_expiring THEN
            status := 'hold_expired';
            RETURN;
        END IF;
    END IF;
    posted := CASE WHEN posting THEN p_post ELSE 0 END;
    INSERT INTO transfers (idempotency_key, request_hash, debit_account_id, credit_account_id,
                           amount_micro, phase, kind, pending_id, expires_at, user_id, description,
                           metadata, created_at)
    VALUES (p_key, p_request_hash, hold_row.debit_account_id, hold_row.credit_account_id,
            CASE WHEN posting THEN p_post ELSE hold_row.amount_micro END, p_phase, hold_row.kind, p_hold_id,
            NULL, hold_row.user_id, hold_row.description, p_metadata, p_now)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING * INTO transfer;
    IF NOT FOUND THEN
        SELECT * INTO STRICT transfer FROM transfers WHERE idempotency_key = p_key;
        status := CASE WHEN transfer.request_hash = p_request_hash THEN 'replayed' ELSE 'conflict' END;
        RETURN;
    END IF;
    UPDATE accounts SET
        debits_posted = debits_posted + CASE WHEN id = hold_row.debit_account_id THEN posted ELSE 0 END,
        credits_posted = credits_posted + CASE WHEN id = hold_row.credit_account_id THEN posted ELSE 0 END,
        debits_pending = debits_pending - CASE WHEN id = hold_row.debit_account_id THEN hold_row.amount_micro ELSE 0 END,
        credits_pending = credits_pending - CASE WHEN id = hold_row.credit_account_id THEN hold_row.amount_micro ELSE 0 END
    WHERE id IN (hold_row.debit_account_id, hold_row.credit_account_id);
    status := 'ok';
END $$;
