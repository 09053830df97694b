-- Browser sessions of the desktop path (decision 0020): a cookie holding an opaque session id opens
-- the proxied target in a browser, whose images, scripts and fetches cannot carry X-Access-Token.
-- Redis resolves a warm session in the token's own round trip; these rows are the truth behind it
-- (a Redis miss, a Redis outage) and the one place a session ends.

-- 1. Sessions. Only the SHA-256 of the cookie's secret part is kept. A session ends at logout, when
--    its token is revoked, and when another device has taken its token (end_reason); it lapses at
--    expires_at (never after its token's expiry).
CREATE TABLE browser_sessions (
    id              bigserial PRIMARY KEY,
    session_hash    bytea NOT NULL UNIQUE CHECK (length(session_hash) = 32),
    token_id        bigint NOT NULL REFERENCES access_tokens (id),
    device_id       text NOT NULL,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    ended_at        timestamptz,
    end_reason      text CHECK (end_reason IN ('logout', 'token_revoked', 'device_conflict')),
    CHECK ((ended_at IS NULL) = (end_reason IS NULL)),
    CHECK (expires_at > created_at)
);
CREATE INDEX browser_sessions_open_idx ON browser_sessions (token_id) WHERE ended_at IS NULL;

-- 2. One-time links: a short-lived code the desktop client puts in a URL for the system browser,
--    exchanged once for a session cookie (the row is deleted by the exchange), so the access token
--    itself never enters a URL or a browser history. Only the code's SHA-256 is kept.
CREATE TABLE browser_session_links (
    code_hash       bytea PRIMARY KEY CHECK (length(code_hash) = 32),
    token_id        bigint NOT NULL REFERENCES access_tokens (id),
    device_id       text NOT NULL,
    -- Where the browser lands once the cookie is set: a path on the target, under the mount.
    path            text NOT NULL CHECK (path LIKE '/%' AND length(path) <= 2048),
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL
);
CREATE INDEX browser_session_links_expiry_idx ON browser_session_links (expires_at);

-- 3. An ended session reaches the credential cache through the outbox (decision 0015), whoever
--    ends it: its Redis record becomes a tombstone, and until Redis has it every gateway refuses the
--    session from memory. Its Redis key carries its token's hash as the Redis Cluster hash tag, so
--    the outbox row names the token's hash too.
ALTER TABLE credential_cache_outbox DROP CONSTRAINT credential_cache_outbox_kind_check;
ALTER TABLE credential_cache_outbox
    ADD CONSTRAINT credential_cache_outbox_kind_check CHECK (kind IN ('token', 'api_key', 'browser_session')),
    ADD COLUMN token_hash bytea CHECK (length(token_hash) = 32),
    ADD CONSTRAINT credential_cache_outbox_session_tag_check CHECK ((kind = 'browser_session') = (token_hash IS NOT NULL));

CREATE FUNCTION browser_session_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO credential_cache_outbox (kind, credential_hash, state, token_hash)
    SELECT 'browser_session', NEW.session_hash, 'revoked', t.token_hash FROM access_tokens t WHERE t.id = NEW.token_id;
    RETURN NULL;
END $$;

CREATE TRIGGER browser_session_ended AFTER UPDATE OF ended_at ON browser_sessions
    FOR EACH ROW WHEN (OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL)
    EXECUTE FUNCTION browser_session_ended();

-- 4. A revoked token ends every browser session of it and voids its unused links, whoever revokes it
--    (API, admin UI, CLI, erasure, SQL). Its own tombstone already refuses them; ending the rows
--    keeps the record true and stops a session from outliving its token in PostgreSQL.
CREATE FUNCTION access_token_revoked_ends_browser_sessions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE browser_sessions SET ended_at = NEW.revoked_at, end_reason = 'token_revoked'
    WHERE token_id = NEW.id AND ended_at IS NULL;
    DELETE FROM browser_session_links WHERE token_id = NEW.id;
    RETURN NULL;
END $$;

CREATE TRIGGER access_token_revoked_ends_browser_sessions AFTER UPDATE OF revoked_at ON access_tokens
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION access_token_revoked_ends_browser_sessions();
