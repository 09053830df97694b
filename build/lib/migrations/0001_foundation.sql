-- Users, access tokens and proxy sessions: the desktop-client proxy path.

CREATE TABLE users (
    id              bigserial PRIMARY KEY,
    email           text NOT NULL,
    username        text,
    full_name       text NOT NULL DEFAULT '',
    password_hash   text,
    role            text NOT NULL DEFAULT 'client' CHECK (role IN ('client', 'manager', 'admin')),
    plan            text NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'premium', 'enterprise')),
    is_active       boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE UNIQUE INDEX users_username_key ON users (lower(username)) WHERE username IS NOT NULL;

CREATE TABLE access_tokens (
    id              bigserial PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users (id),
    -- SHA-256 of the token; the plaintext is shown once and never stored.
    token_hash      bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    scope           text NOT NULL CHECK (scope IN ('full', 'certificates_only')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX access_tokens_user_idx ON access_tokens (user_id, created_at DESC);

CREATE TABLE proxy_sessions (
    id              bigserial PRIMARY KEY,
    token_id        bigint NOT NULL REFERENCES access_tokens (id),
    device_id       text NOT NULL,
    ip              text NOT NULL DEFAULT '',
    user_agent      text NOT NULL DEFAULT '',
    requests        bigint NOT NULL DEFAULT 0 CHECK (requests >= 0),
    bytes_in        bigint NOT NULL DEFAULT 0 CHECK (bytes_in >= 0),
    bytes_out       bigint NOT NULL DEFAULT 0 CHECK (bytes_out >= 0),
    started_at      timestamptz NOT NULL,
    last_seen_at    timestamptz NOT NULL,
    ended_at        timestamptz
);
-- At most one open session per (token, device); batch flushes upsert into it.
CREATE UNIQUE INDEX proxy_sessions_open_key ON proxy_sessions (token_id, device_id) WHERE ended_at IS NULL;
CREATE INDEX proxy_sessions_open_seen_idx ON proxy_sessions (last_seen_at) WHERE ended_at IS NULL;
