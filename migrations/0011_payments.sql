-- Payments through Stripe, CryptoCloud and Robokassa (decision 0017): each payment, its append-only
-- history, and what a refund could not take back (a user's debt), which blocks spending until paid.

-- 1. A credit taken back after a provider's refund, or a debt repaid from a later deposit, moves
--    as a transfer of its own kind.
ALTER TABLE transfers DROP CONSTRAINT transfers_kind_check;
ALTER TABLE transfers ADD CONSTRAINT transfers_kind_check
    CHECK (kind IN ('deposit', 'purchase', 'refund', 'referral_bonus', 'usage', 'adjustment', 'chargeback'));

-- 2. Debts: what a refund was owed beyond the user's balance (owed), and what later money paid of it
--    (repaid, with the chargeback transfer that moved it). Append-only and keyed, like transfers;
--    accounts.owed_micro is their running sum, checked by `tollgate reconcile`.
ALTER TABLE accounts ADD COLUMN owed_micro bigint NOT NULL DEFAULT 0
    CHECK (owed_micro >= 0 AND owed_micro <= 4000000000000000000);

CREATE TABLE debts (
    id                  bigserial PRIMARY KEY,
    idempotency_key     text NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    account_id          bigint NOT NULL REFERENCES accounts (id),
    kind                text NOT NULL CHECK (kind IN ('owed', 'repaid')),
    amount_micro        bigint NOT NULL CHECK (amount_micro > 0),
    transfer_id         bigint REFERENCES transfers (id),
    created_at          timestamptz NOT NULL,
    CHECK ((kind = 'repaid') = (transfer_id IS NOT NULL))
);
CREATE INDEX debts_account_idx ON debts (account_id, id);
CREATE TRIGGER debts_append_only BEFORE UPDATE OR DELETE ON debts
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER debts_no_truncate BEFORE TRUNCATE ON debts
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- 3. ledger_move as in 0006, with one rule more: a user who owes may spend only what exceeds the
--    debt (available - amount - owed >= -overdraft). A chargeback (the take-back itself, or a debt
--    repaid) is held to the overdraft alone, since it is what pays the debt.
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
    SELECT * INTO transfer FROM transfers WHERE idempotency_key = p_key;
    IF FOUND THEN
        status := CASE WHEN transfer.request_hash = p_request_hash THEN 'replayed' ELSE 'conflict' END;
        RETURN;
    END IF;
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
           - debit_account.debits_pending - p_amount
           - (CASE WHEN p_kind = 'chargeback' THEN 0 ELSE debit_account.owed_micro END)
           < -debit_account.overdraft_micro THEN
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

-- 4. A debt recorded or repaid, with the user account locked (the caller's transaction holds the
--    lock until it commits, so the balance it read is the one the chargeback saw). Keyed: the same
--    key twice writes one row.
CREATE FUNCTION ledger_debt(p_key text, p_account bigint, p_kind text, p_amount bigint,
                            p_transfer bigint, p_now timestamptz, OUT status text)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO debts (idempotency_key, account_id, kind, amount_micro, transfer_id, created_at)
    VALUES (p_key, p_account, p_kind, p_amount, p_transfer, p_now)
    ON CONFLICT (idempotency_key) DO NOTHING;
    IF NOT FOUND THEN
        status := 'replayed';
        RETURN;
    END IF;
    UPDATE accounts SET owed_micro = owed_micro + CASE WHEN p_kind = 'owed' THEN p_amount ELSE -p_amount END
    WHERE id = p_account;
    status := 'ok';
END $$;

-- 5. Payments. The amount is money in `currency` (a decimal, never a float); `credits_micro` what it
--    buys. The provider's reference is unique per provider: the Checkout Session id (cs_…), the
--    CryptoCloud invoice (INV-…), or for Robokassa our own id (its InvId). A guest payment names an
--    email and gets its user when it is paid.
CREATE TABLE payments (
    id                  bigserial PRIMARY KEY,
    provider            text NOT NULL CHECK (provider IN ('stripe', 'cryptocloud', 'robokassa')),
    provider_reference  text CHECK (length(provider_reference) BETWEEN 1 AND 200),
    -- Stripe's PaymentIntent (pi_…), learnt when the session is paid: what a charge.refunded names.
    provider_payment    text CHECK (length(provider_payment) BETWEEN 1 AND 200),
    currency            text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    amount              numeric(20, 2) NOT NULL CHECK (amount > 0),
    credits_micro       bigint NOT NULL CHECK (credits_micro > 0 AND credits_micro <= 1000000000000000),
    bundle_id           bigint REFERENCES bundles (id),
    status              text NOT NULL CHECK (status IN ('pending', 'paid', 'failed', 'expired',
                                                         'partially_refunded', 'refunded')),
    user_id             bigint REFERENCES users (id),
    guest_email         text CHECK (length(guest_email) BETWEEN 3 AND 254),
    payment_url         text NOT NULL DEFAULT '',
    transfer_id         bigint REFERENCES transfers (id),
    -- Credits a refund took back or recorded as owed so far (cumulative).
    refunded_micro      bigint NOT NULL DEFAULT 0 CHECK (refunded_micro >= 0 AND refunded_micro <= credits_micro),
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    paid_at             timestamptz,
    -- When the re-check task asks the provider next (NULL: never again).
    next_check_at       timestamptz,
    UNIQUE (provider, provider_reference),
    CHECK (user_id IS NOT NULL OR guest_email IS NOT NULL),
    CHECK ((transfer_id IS NOT NULL) = (status IN ('paid', 'partially_refunded', 'refunded')))
);
CREATE INDEX payments_user_idx ON payments (user_id, id DESC);
CREATE INDEX payments_due_idx ON payments (next_check_at) WHERE next_check_at IS NOT NULL;
CREATE UNIQUE INDEX payments_provider_payment_key ON payments (provider, provider_payment)
    WHERE provider_payment IS NOT NULL;

-- Every status change and every refused callback of a known payment, in order; never changed.
CREATE TABLE payment_history (
    id                  bigserial PRIMARY KEY,
    payment_id          bigint NOT NULL REFERENCES payments (id),
    status              text NOT NULL,
    event               text NOT NULL CHECK (length(event) BETWEEN 1 AND 100),
    detail              jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL
);
CREATE INDEX payment_history_payment_idx ON payment_history (payment_id, id);
CREATE TRIGGER payment_history_append_only BEFORE UPDATE OR DELETE ON payment_history
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER payment_history_no_truncate BEFORE TRUNCATE ON payment_history
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
