-- The admin web UI (decision 0018): its server-side sessions, erasure of a user's personal data,
-- and the indexes its pages read through.

-- 1. Sessions. The cookie holds a random token; only its SHA-256 is stored. A session ends at
--    logout, at its expiry, and when its user is deactivated or no longer staff (the trigger
--    below, whoever makes the change: the UI, the JSON API, the CLI or SQL).
CREATE TABLE admin_sessions (
    id              bigserial PRIMARY KEY,
    token_hash      bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    user_id         bigint NOT NULL REFERENCES users (id),
    -- Every form of the session carries this token; a POST without it changes nothing.
    csrf_token      text NOT NULL CHECK (length(csrf_token) >= 32),
    created_at      timestamptz NOT NULL,
    last_seen_at    timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL
);
CREATE INDEX admin_sessions_user_idx ON admin_sessions (user_id);

CREATE FUNCTION admin_sessions_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM admin_sessions WHERE user_id = NEW.id;
    RETURN NULL;
END $$;

CREATE TRIGGER users_end_admin_sessions AFTER UPDATE OF is_active, role ON users
    FOR EACH ROW WHEN (NOT NEW.is_active OR NEW.role NOT IN ('admin', 'manager'))
    EXECUTE FUNCTION admin_sessions_end();

-- 2. Erasure (gateway/accounts/erasure.py). The user row stays, pseudonymised, because the
--    append-only ledger references it; erased_at marks it and refuses further changes.
ALTER TABLE users ADD COLUMN erased_at timestamptz;

-- audit_log stays append-only, with one exception: audit_log_erase() may blank the personal columns
-- (ip, and personal text inside details) of the entries about one user. It names that user in a
-- transaction-local setting; the guard lets through an UPDATE that changes nothing but those two
-- columns, only while the setting is present, and only towards an empty ip. DELETE and TRUNCATE
-- stay refused for everyone.
CREATE FUNCTION audit_log_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND coalesce(current_setting('tollgate.erasing_user', true), '') <> ''
       AND NEW.id = OLD.id AND NEW.actor_id IS NOT DISTINCT FROM OLD.actor_id AND NEW.action = OLD.action
       AND NEW.target_type = OLD.target_type AND NEW.target_id = OLD.target_id
       AND NEW.created_at = OLD.created_at AND NEW.ip IN ('', OLD.ip) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

DROP TRIGGER audit_log_append_only ON audit_log;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_guard();

-- details with each match of the patterns replaced by 'erased' (as JSON text, so nested values too).
CREATE FUNCTION audit_details_erased(p_details jsonb, p_patterns text[]) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    text_form text := p_details::text;
    pattern text;
BEGIN
    FOREACH pattern IN ARRAY p_patterns LOOP
        text_form := regexp_replace(text_form, pattern, 'erased', 'gi');
    END LOOP;
    RETURN text_form::jsonb;
END $$;

-- The entries about the user (as actor, as the target, or naming them in details.user_id) lose the
-- address the user acted from; in those and in any entry whose details mention one of p_texts
-- (their email, username, name, addresses), each mention becomes 'erased'. The address a staff
-- member acted on them from is the staff member's, and stays. Returns the entries changed.
CREATE FUNCTION audit_log_erase(p_user_id bigint, p_texts text[]) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    changed integer;
    patterns text[];
BEGIN
    -- Each text as it appears inside JSON (escaped, without its quotes), as a regular expression.
    SELECT coalesce(array_agg(regexp_replace(substr(to_json(t)::text, 2, length(to_json(t)::text) - 2),
                                             '([.^$*+?()\[\]{}|\\])', '\\\1', 'g')), '{}')
      INTO patterns FROM unnest(p_texts) AS t WHERE length(t) >= 3;
    PERFORM set_config('tollgate.erasing_user', p_user_id::text, true);
    UPDATE audit_log a SET
        ip = CASE WHEN a.actor_id = p_user_id THEN '' ELSE a.ip END,
        details = audit_details_erased(a.details, patterns)
    WHERE a.actor_id = p_user_id
       OR (a.target_type = 'user' AND a.target_id = p_user_id::text)
       OR a.details ->> 'user_id' = p_user_id::text
       OR EXISTS (SELECT 1 FROM unnest(patterns) AS p WHERE a.details::text ~* p);
    GET DIAGNOSTICS changed = ROW_COUNT;
    PERFORM set_config('tollgate.erasing_user', '', true);
    RETURN changed;
END $$;

-- 3. Indexes of the pages (each page reads one keyset page or one bounded aggregate).
-- The ledger explorer, newest first, by date range, type or user; the dashboard's credit sums
-- read the first as a covering index (an index-only scan over the period).
CREATE INDEX transfers_created_idx ON transfers (created_at DESC, id DESC)
    INCLUDE (kind, phase, amount_micro, debit_account_id, credit_account_id, user_id);
CREATE INDEX transfers_kind_created_idx ON transfers (kind, created_at DESC, id DESC);
CREATE INDEX transfers_user_created_idx ON transfers (user_id, created_at DESC, id DESC);
DROP INDEX transfers_user_idx;  -- (user_id, id DESC): the index above serves what it served
-- AI usage by model, key and day over a date range (covering).
CREATE INDEX ai_usage_created_idx ON ai_usage (created_at)
    INCLUDE (user_id, api_key_id, provider, model, input_tokens, cached_input_tokens, output_tokens,
             charged_micro);
-- A user's proxy sessions (open and ended), and the audit log by action.
CREATE INDEX proxy_sessions_token_idx ON proxy_sessions (token_id, id DESC);
CREATE INDEX audit_log_action_idx ON audit_log (action, id DESC);

-- 4. The ledger's daily roll-up (ledger/daily.py): posted money per closed UTC day, kind and user
--    side, summed once per day on first use; the dashboard's 30 days read these rows.
CREATE TABLE ledger_daily (
    day             date NOT NULL,
    kind            text NOT NULL,
    side            text NOT NULL CHECK (side IN ('to_user', 'from_user')),
    amount_micro    bigint NOT NULL,
    transfers       bigint NOT NULL,
    PRIMARY KEY (day, kind, side)
);
-- The days rolled up (a day without transfers has no totals, and is rolled up all the same).
CREATE TABLE ledger_days_rolled (day date PRIMARY KEY);

-- 5. The same for AI usage (gateway/ai/usage_daily.py): calls, tokens and credits per closed UTC
--    day, provider and model, for the reports by model and by day over long ranges.
CREATE TABLE ai_usage_daily (
    day                 date NOT NULL,
    provider            text NOT NULL,
    model               text NOT NULL,
    calls               bigint NOT NULL,
    input_tokens        bigint NOT NULL,
    cached_input_tokens bigint NOT NULL,
    output_tokens       bigint NOT NULL,
    charged_micro       bigint NOT NULL,
    PRIMARY KEY (day, provider, model)
);
CREATE TABLE ai_usage_days_rolled (day date PRIMARY KEY);
-- One user's (or a manager's clients') usage over a date range, covering; replaces (user_id, id DESC).
DROP INDEX ai_usage_user_idx;
CREATE INDEX ai_usage_user_created_idx ON ai_usage (user_id, created_at)
    INCLUDE (api_key_id, provider, model, input_tokens, cached_input_tokens, output_tokens, charged_micro);
