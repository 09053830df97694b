-- The ledger: accounts with stored balances, append-only double-entry transfers, holds, audit log.
-- Amounts are integer micro-credits (1 credit = 1,000,000). Balances follow TigerBeetle's model:
-- four running sums per account, all updated in the transaction that appends the transfer.

CREATE TABLE accounts (
    id                  bigserial PRIMARY KEY,
    -- 'user' accounts belong to one user; system accounts are named by a unique code.
    kind                text NOT NULL CHECK (kind IN ('user', 'revenue', 'payment_clearing',
                                                      'promotions', 'refunds', 'adjustments')),
    user_id             bigint UNIQUE REFERENCES users (id),
    code                text UNIQUE,
    debits_posted       bigint NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_posted      bigint NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    debits_pending      bigint NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    credits_pending     bigint NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    -- How far a user account may go below zero (0 = not at all). System accounts are unbounded.
    overdraft_micro     bigint NOT NULL DEFAULT 0 CHECK (overdraft_micro >= 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'user') = (user_id IS NOT NULL)),
    CHECK ((kind = 'user') = (code IS NULL)),
    -- The invariant held twice: here, and asserted by ledger.transfers before each write.
    CHECK (kind <> 'user' OR credits_posted - debits_posted - debits_pending >= -overdraft_micro)
);

INSERT INTO accounts (kind, code) VALUES
    ('revenue', 'revenue'),
    ('payment_clearing', 'payment_clearing'),
    ('promotions', 'promotions'),
    ('refunds', 'refunds'),
    ('adjustments', 'adjustments');

CREATE TABLE transfers (
    id                  bigserial PRIMARY KEY,
    idempotency_key     text NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    -- SHA-256 of the request's content: the same key with other content is a conflict.
    request_hash        bytea NOT NULL,
    debit_account_id    bigint NOT NULL REFERENCES accounts (id),
    credit_account_id   bigint NOT NULL REFERENCES accounts (id),
    amount_micro        bigint NOT NULL CHECK (amount_micro >= 0),
    -- posted: moves money now; pending: a hold; post_pending / void_pending resolve a hold.
    phase               text NOT NULL CHECK (phase IN ('posted', 'pending', 'post_pending', 'void_pending')),
    kind                text NOT NULL CHECK (kind IN ('deposit', 'purchase', 'refund', 'referral_bonus',
                                                      'usage', 'adjustment')),
    pending_id          bigint REFERENCES transfers (id),
    expires_at          timestamptz,
    user_id             bigint REFERENCES users (id),
    description         text NOT NULL DEFAULT '',
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (debit_account_id <> credit_account_id),
    CHECK ((phase IN ('post_pending', 'void_pending')) = (pending_id IS NOT NULL)),
    CHECK ((phase = 'pending') = (expires_at IS NOT NULL)),
    CHECK (amount_micro > 0 OR phase IN ('post_pending', 'void_pending'))
);
-- A hold is resolved (posted, voided or expired) at most once.
CREATE UNIQUE INDEX transfers_resolution_key ON transfers (pending_id) WHERE pending_id IS NOT NULL;
CREATE INDEX transfers_debit_idx ON transfers (debit_account_id, id);
CREATE INDEX transfers_credit_idx ON transfers (credit_account_id, id);
CREATE INDEX transfers_user_idx ON transfers (user_id, id DESC);
CREATE INDEX transfers_open_holds_idx ON transfers (expires_at) WHERE phase = 'pending';

CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER transfers_append_only BEFORE UPDATE OR DELETE ON transfers
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER transfers_no_truncate BEFORE TRUNCATE ON transfers
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

CREATE TABLE audit_log (
    id              bigserial PRIMARY KEY,
    actor_id        bigint REFERENCES users (id),
    action          text NOT NULL,
    target_type     text NOT NULL DEFAULT '',
    target_id       text NOT NULL DEFAULT '',
    ip              text NOT NULL DEFAULT '',
    details         jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_created_idx ON audit_log (created_at DESC);
CREATE INDEX audit_log_target_idx ON audit_log (target_type, target_id);

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
