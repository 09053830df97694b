-- API controls (decision 0019): key rotation with a grace period, key changes that reach the
-- credential cache at once, and budgets (credit caps per key and per user over a period) held in
-- the same statement as the AI call's hold.

-- 1. Rotation. A rotated key gets a new secret (key_hash); the old one stays valid until
--    previous_expires_at (the grace period), then it is refused like an expired key.
ALTER TABLE api_keys
    ADD COLUMN previous_key_hash bytea UNIQUE CHECK (length(previous_key_hash) = 32),
    ADD COLUMN previous_expires_at timestamptz,
    ADD COLUMN rotated_at timestamptz,
    ADD CONSTRAINT api_keys_previous_together CHECK ((previous_key_hash IS NULL) = (previous_expires_at IS NULL));

-- A revocation refuses both secrets of a key (decision 0015's queue, as in 0008).
CREATE OR REPLACE FUNCTION api_key_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO credential_cache_outbox (kind, credential_hash, state)
    SELECT 'api_key', secret, 'revoked' FROM unnest(ARRAY[NEW.key_hash, NEW.previous_key_hash]) AS secret
    WHERE secret IS NOT NULL;
    RETURN NULL;
END $$;

-- A live key changed (its models, addresses, limits, expiry, secret): its cached records are
-- dropped, so every gateway reads the new row on the key's next request. A secret pushed out by
-- a second rotation within the grace period is refused at once.
CREATE FUNCTION api_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO credential_cache_outbox (kind, credential_hash, state)
    SELECT 'api_key', secret, 'refresh' FROM unnest(ARRAY[OLD.key_hash, NEW.previous_key_hash]) AS secret
    WHERE secret IS NOT NULL
    UNION ALL
    SELECT 'api_key', OLD.previous_key_hash, 'revoked'
    WHERE OLD.previous_key_hash IS NOT NULL AND OLD.previous_key_hash IS DISTINCT FROM NEW.previous_key_hash
      AND OLD.previous_key_hash IS DISTINCT FROM NEW.key_hash;
    RETURN NULL;
END $$;

CREATE TRIGGER api_key_changed AFTER UPDATE OF allowed_models, ip_allowlist, rpm_limit, tpm_limit, expires_at,
                                            key_hash, previous_key_hash, previous_expires_at ON api_keys
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NULL
                       AND (OLD.allowed_models, OLD.ip_allowlist, OLD.rpm_limit, OLD.tpm_limit, OLD.expires_at,
                            OLD.key_hash, OLD.previous_key_hash, OLD.previous_expires_at)
                           IS DISTINCT FROM
                           (NEW.allowed_models, NEW.ip_allowlist, NEW.rpm_limit, NEW.tpm_limit, NEW.expires_at,
                            NEW.key_hash, NEW.previous_key_hash, NEW.previous_expires_at))
    EXECUTE FUNCTION api_key_changed();

-- A user disabled or changed: the secrets in their grace period too (0008 named only key_hash).
CREATE OR REPLACE FUNCTION user_credentials_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    change text := CASE WHEN NOT NEW.is_active THEN 'disabled' ELSE 'refresh' END;
BEGIN
    INSERT INTO credential_cache_outbox (kind, credential_hash, state)
    SELECT 'token', token_hash, change FROM access_tokens
    WHERE user_id = NEW.id AND revoked_at IS NULL AND expires_at > now()
    UNION ALL
    SELECT 'api_key', key_hash, change FROM api_keys
    WHERE user_id = NEW.id AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
    UNION ALL
    SELECT 'api_key', previous_key_hash, change FROM api_keys
    WHERE user_id = NEW.id AND revoked_at IS NULL AND previous_expires_at > now();
    RETURN NULL;
END $$;

-- 2. Budgets: a credit cap on the AI usage of one key (api_key_id) or of all a user's keys
--    (api_key_id NULL) per calendar window in UTC — a day, a week from Monday, a month — or in
--    total. spent_micro is what was charged in the window starting at window_start; held_micro is
--    what the budget's open holds reserve (whatever their window). A hold fits when spent + held +
--    the hold stay within limit_micro; it is checked and charged under the budget's row lock in the
--    statement that places the hold, so parallel calls never overshoot (ledger_move_within_budgets).
CREATE TABLE budgets (
    id              bigserial PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users (id),
    api_key_id      bigint REFERENCES api_keys (id),
    period          text NOT NULL CHECK (period IN ('day', 'week', 'month', 'total')),
    limit_micro     bigint NOT NULL CHECK (limit_micro > 0 AND limit_micro <= 1000000000000000),
    -- A soft alert (log, metric, audit entry) once per window when spent reaches this share; 0 = none.
    alert_percent   integer NOT NULL DEFAULT 80 CHECK (alert_percent BETWEEN 0 AND 100),
    window_start    timestamptz NOT NULL,
    spent_micro     bigint NOT NULL DEFAULT 0 CHECK (spent_micro >= 0),
    held_micro      bigint NOT NULL DEFAULT 0 CHECK (held_micro >= 0),
    -- The window whose alert was given (claimed by the alert sweep, so each fires once).
    alerted_window  timestamptz,
    updated_at      timestamptz NOT NULL,
    UNIQUE NULLS NOT DISTINCT (user_id, api_key_id)
);
CREATE INDEX budgets_alert_idx ON budgets (id) WHERE alert_percent > 0;

-- Which budgets an open hold charged, and how much it holds: its resolution (post, void, expiry)
-- gives that back and adds what was posted. Bookkeeping beside the ledger, not money: a row lives
-- from the hold to its resolution.
CREATE TABLE budget_holds (
    hold_id         bigint PRIMARY KEY REFERENCES transfers (id),
    budget_ids      bigint[] NOT NULL,
    amount_micro    bigint NOT NULL CHECK (amount_micro > 0)
);

-- The start of the window that holds p_at: UTC calendar days, ISO weeks (Monday), months; the
-- epoch for 'total'.
CREATE FUNCTION budget_window(p_period text, p_at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_period = 'total' THEN to_timestamp(0)
                ELSE date_trunc(p_period, p_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' END
$$;

-- ledger_move (0011) for an AI call's hold, within the budgets of its key and user. Lock order as
-- everywhere in the ledger: the accounts (by id), then the budgets (by id); the resolution trigger
-- below takes them in the same order, so the two never wait on each other in a cycle. A refusal is
-- returned as status 'limit_exceeded' with nothing written; detail names the budget
-- ('key' or 'user', period, limit in micro-credits). Without budgets it is ledger_move itself.
CREATE FUNCTION ledger_move_within_budgets(
    p_key text, p_request_hash bytea, p_debit bigint, p_credit bigint, p_amount bigint,
    p_phase text, p_kind text, p_expires_at timestamptz, p_user_id bigint, p_description text,
    p_metadata jsonb, p_now timestamptz, p_api_key_id bigint,
    OUT status text, OUT detail text, OUT transfer transfers)
LANGUAGE plpgsql AS $$
DECLARE
    budget budgets;
    charged bigint[] := '{}';
    moved record;
BEGIN
    IF p_phase = 'pending'
       AND EXISTS (SELECT 1 FROM budgets WHERE user_id = p_user_id
                   AND (api_key_id IS NULL OR api_key_id = p_api_key_id))
       AND NOT EXISTS (SELECT 1 FROM transfers WHERE idempotency_key = p_key) THEN
        PERFORM 1 FROM accounts WHERE id IN (p_debit, p_credit) ORDER BY id FOR UPDATE;
        FOR budget IN SELECT * FROM budgets WHERE user_id = p_user_id
                      AND (api_key_id IS NULL OR api_key_id = p_api_key_id) ORDER BY id FOR UPDATE LOOP
            IF (CASE WHEN budget.window_start >= budget_window(budget.period, p_now)
                     THEN budget.spent_micro ELSE 0 END)::numeric + budget.held_micro + p_amount
               > budget.limit_micro THEN
                status := 'limit_exceeded';
                detail := concat_ws(':', CASE WHEN budget.api_key_id IS NULL THEN 'user' ELSE 'key' END,
                                    budget.period, budget.limit_micro);
                RETURN;
            END IF;
            charged := charged || budget.id;
        END LOOP;
    END IF;
    SELECT * INTO moved
    FROM ledger_move(p_key, p_request_hash, p_debit, p_credit, p_amount, p_phase, p_kind, p_expires_at,
                     p_user_id, p_description, p_metadata, p_now);
    status := moved.status;
    detail := moved.detail;
    transfer := moved.transfer;
    IF status = 'ok' AND cardinality(charged) > 0 THEN
        UPDATE budgets SET
            spent_micro = CASE WHEN window_start >= budget_window(period, p_now) THEN spent_micro ELSE 0 END,
            window_start = greatest(window_start, budget_window(period, p_now)),
            held_micro = held_micro + p_amount
        WHERE id = ANY(charged);
        INSERT INTO budget_holds (hold_id, budget_ids, amount_micro) VALUES (transfer.id, charged, p_amount);
    END IF;
END $$;

-- A hold's resolution, however it comes (the call's settlement, the expiry sweep, an operator):
-- its budgets give back what it held and count what was posted, in the window of the resolution.
CREATE FUNCTION budget_hold_resolved() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    link budget_holds;
BEGIN
    DELETE FROM budget_holds WHERE hold_id = NEW.pending_id RETURNING * INTO link;
    IF FOUND THEN
        UPDATE budgets SET
            spent_micro = CASE WHEN window_start >= budget_window(period, NEW.created_at) THEN spent_micro ELSE 0 END
                          + CASE WHEN NEW.phase = 'post_pending' THEN NEW.amount_micro ELSE 0 END,
            window_start = greatest(window_start, budget_window(period, NEW.created_at)),
            held_micro = held_micro - link.amount_micro
        WHERE id = ANY(link.budget_ids);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER transfers_budget_hold_resolved AFTER INSERT ON transfers
    FOR EACH ROW WHEN (NEW.pending_id IS NOT NULL AND NEW.kind = 'usage')
    EXECUTE FUNCTION budget_hold_resolved();
