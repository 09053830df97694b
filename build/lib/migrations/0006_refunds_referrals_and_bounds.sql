-- Decision 0014.
--
-- 1. A referral bonus shrinks with the refunds of the purchase that paid it: reversed_micro went
--    back to promotions; unrecovered_micro was due but the referrer had already spent it.
ALTER TABLE referral_rewards
    ADD COLUMN reversed_micro bigint NOT NULL DEFAULT 0 CHECK (reversed_micro >= 0),
    ADD COLUMN unrecovered_micro bigint NOT NULL DEFAULT 0 CHECK (unrecovered_micro >= 0),
    ADD CONSTRAINT referral_rewards_reversal_bounded CHECK (reversed_micro + unrecovered_micro <= amount_micro);
CREATE INDEX referral_rewards_purchase_idx ON referral_rewards (purchase_transfer_id);
CREATE INDEX access_tokens_purchase_idx ON access_tokens (purchase_transfer_id) WHERE purchase_transfer_id IS NOT NULL;

-- 2. Account totals stay far inside bigint (ATTACK-2026-12-01 L10: 9,223 top-ups of 10^9 credits
--    overflowed the adjustments account and every later adjustment was a 500). The functions below
--    refuse, with status 'amount_out_of_range' and nothing written, a single amount above 10^15
--    (ledger.money.AMOUNT_MAX_MICRO), a running sum above 4 * 10^18 (ACCOUNT_SUM_MAX_MICRO: sums and
--    their differences then never overflow) and a user balance above 10^16 (USER_BALANCE_MAX_MICRO,
--    10^10 credits: one user cannot fill a shared system account by themselves). The same bounds as
--    constraints: the second holder of the invariant, for writes that bypass the functions. The user
--    bound is NOT VALID so that an existing larger balance does not stop the migration.
ALTER TABLE accounts
    ADD CONSTRAINT accounts_sums_bounded CHECK (
        debits_posted <= 4000000000000000000 AND credits_posted <= 4000000000000000000
        AND debits_pending <= 4000000000000000000 AND credits_pending <= 4000000000000000000),
    ADD CONSTRAINT accounts_user_balance_bounded CHECK (
        kind <> 'user' OR credits_posted + credits_pending - debits_posted <= 10000000000000000) NOT VALID;

-- The functions of 0005_ledger_functions.sql with the bounds added (same signatures and statuses).

-- Move money now (p_phase 'posted') or hold it until p_expires_at (p_phase 'pending').
CREATE OR REPLACE FUNCTION ledger_move(
    p_key text, p_request_hash bytea, p_debit bigint, p_credit bigint, p_amount bigint,
    p_phase text, p_kind text, p_expires_at timestamptz, p_user_id bigint, p_description text,
    p_metadata jsonb, p_now timestamptz,
    OUT status text, OUT detail text, OUT transfer transfers)
LANGUAGE plpgsql AS $$
DECLARE
    account accounts;
    debit_account accounts;
    credit_account accounts;
    credit_found boolean := false;
    posting boolean := p_phase = 'posted';
BEGIN
    IF p_amount > 1000000000000000 THEN  -- ledger.money.AMOUNT_MAX_MICRO
        status := 'amount_out_of_range';
        detail := 'amount';
        RETURN;
    END IF;
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
            credit_account := account;
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
    -- Decision 0014: no running sum passes ledger.money.ACCOUNT_SUM_MAX_MICRO (far inside bigint, so
    -- no sum or difference of sums overflows), and no user holds more than USER_BALANCE_MAX_MICRO.
    IF (CASE WHEN posting THEN debit_account.debits_posted ELSE debit_account.debits_pending END)::numeric
           + p_amount > 4000000000000000000
       OR (CASE WHEN posting THEN credit_account.credits_posted ELSE credit_account.credits_pending END)::numeric
           + p_amount > 4000000000000000000 THEN
        status := 'amount_out_of_range';
        detail := 'account_total';
        RETURN;
    END IF;
    IF credit_account.kind = 'user'
       AND credit_account.credits_posted::numeric + credit_account.credits_pending
           - credit_account.debits_posted + p_amount > 10000000000000000 THEN
        status := 'amount_out_of_range';
        detail := 'user_balance';
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
CREATE OR REPLACE FUNCTION ledger_resolve(
    p_key text, p_request_hash bytea, p_hold_id bigint, p_phase text, p_post bigint,
    p_expiring boolean, p_metadata jsonb, p_now timestamptz,
    OUT status text, OUT detail text, OUT transfer transfers)
LANGUAGE plpgsql AS $$
DECLARE
    hold_row transfers;
    account accounts;
    found_count integer := 0;
    sum_max numeric := 0;
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
        sum_max := greatest(sum_max, CASE WHEN account.id = hold_row.debit_account_id
                                          THEN account.debits_posted ELSE account.credits_posted END);
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
        -- The posted sums grow by the posted amount (the pending ones were bounded when held).
        IF sum_max + p_post > 4000000000000000000 THEN
            status := 'amount_out_of_range';
            detail := 'account_total';
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
