-- Credential cache outbox (decision 0015): every change that must refuse a cached credential
-- (revocation, a disabled user) queues its Redis record change in the same transaction as the
-- change itself, whoever makes it (API, admin, CLI, SQL). Gateways push the queue to Redis and
-- delete what Redis took; until then they refuse the queued credentials from memory. So a
-- revocation made while Redis is frozen or down is never undone by a stale record when it returns.
CREATE TABLE credential_cache_outbox (
    id              bigserial PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('token', 'api_key')),
    credential_hash bytea NOT NULL CHECK (length(credential_hash) = 32),
    -- revoked / disabled: write a refusing record; refresh: drop the record (re-read on next use).
    state           text NOT NULL CHECK (state IN ('revoked', 'disabled', 'refresh')),
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION credential_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Delivered at commit to every listening gateway: the queue is pushed at once.
    PERFORM pg_notify('credential_outbox', '');
    RETURN NULL;
END $$;

CREATE TRIGGER credential_outbox_notify AFTER INSERT ON credential_cache_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION credential_outbox_notify();

CREATE FUNCTION access_token_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO credential_cache_outbox (kind, credential_hash, state) VALUES ('token', NEW.token_hash, 'revoked');
    RETURN NULL;
END $$;

CREATE TRIGGER access_token_revoked AFTER UPDATE OF revoked_at ON access_tokens
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION access_token_revoked();

CREATE FUNCTION api_key_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO credential_cache_outbox (kind, credential_hash, state) VALUES ('api_key', NEW.key_hash, 'revoked');
    RETURN NULL;
END $$;

CREATE TRIGGER api_key_revoked AFTER UPDATE OF revoked_at ON api_keys
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION api_key_revoked();

-- A user disabled: every live credential of theirs is refused; enabled again or given another
-- plan: their records are dropped so the next request reads the new state.
CREATE FUNCTION user_credentials_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    change text := CASE WHEN NOT NEW.is_active THEN 'disabled' ELSE 'refresh' END;
BEGIN
    INSERT INTO credential_cache_outbox (kind, credential_hash, state)
    SELECT 'token', token_hash, change FROM access_tokens
    WHERE user_id = NEW.id AND revoked_at IS NULL AND expires_at > now()
    UNION ALL
    SELECT 'api_key', key_hash, change FROM api_keys
    WHERE user_id = NEW.id AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now());
    RETURN NULL;
END $$;

CREATE TRIGGER user_credentials_changed AFTER UPDATE OF is_active, plan ON users
    FOR EACH ROW WHEN (OLD.is_active IS DISTINCT FROM NEW.is_active OR OLD.plan IS DISTINCT FROM NEW.plan)
    EXECUTE FUNCTION user_credentials_changed();
