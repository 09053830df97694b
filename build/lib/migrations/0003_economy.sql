-- The credit economy: login sessions, magic links, referrals, managers, bundles, paid tokens.

ALTER TABLE users
    ADD COLUMN referral_code text UNIQUE CHECK (referral_code ~ '^[A-Z0-9]{12}$'),
    ADD COLUMN referred_by bigint REFERENCES users (id),
    -- A client has at most one manager: a single column, checked to be a manager by the API.
    ADD COLUMN manager_id bigint REFERENCES users (id),
    ADD COLUMN last_login_at timestamptz,
    ADD CONSTRAINT users_not_own_referrer CHECK (referred_by IS NULL OR referred_by <> id),
    ADD CONSTRAINT users_not_own_manager CHECK (manager_id IS NULL OR manager_id <> id);
CREATE INDEX users_manager_idx ON users (manager_id) WHERE manager_id IS NOT NULL;
CREATE INDEX users_referred_by_idx ON users (referred_by) WHERE referred_by IS NOT NULL;

-- Refresh tokens are JWTs; their jti is recorded so each can be used once (rotation) and a reuse
-- revokes the whole family (every token descended from one login).
CREATE TABLE refresh_tokens (
    jti             text PRIMARY KEY CHECK (length(jti) = 32),
    family          text NOT NULL,
    user_id         bigint NOT NULL REFERENCES users (id),
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    used_at         timestamptz,
    revoked_at      timestamptz
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family);

CREATE TABLE magic_links (
    id              bigserial PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users (id),
    token_hash      bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    consumed_at     timestamptz
);

CREATE TABLE bundles (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    description     text NOT NULL DEFAULT '',
    token_count     integer NOT NULL CHECK (token_count BETWEEN 1 AND 100),
    duration_hours  integer NOT NULL CHECK (duration_hours > 0),
    scope           text NOT NULL DEFAULT 'full' CHECK (scope IN ('full', 'certificates_only')),
    price_micro     bigint NOT NULL CHECK (price_micro > 0),
    is_active       boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz
);

-- Four defaults, 10-20% below the single-token prices (1h 1, 12h 10, 24h 18, 168h 100, 720h 300).
INSERT INTO bundles (name, description, token_count, duration_hours, price_micro) VALUES
    ('Day pack', 'Five 24-hour tokens, 10% off', 5, 24, 81000000),
    ('Ten days', 'Ten 24-hour tokens, 15% off', 10, 24, 153000000),
    ('Month of weeks', 'Four 7-day tokens, 15% off', 4, 168, 340000000),
    ('Quarter', 'Three 30-day tokens, 20% off', 3, 720, 720000000);

ALTER TABLE access_tokens
    ADD COLUMN duration_hours integer,
    ADD COLUMN price_micro bigint NOT NULL DEFAULT 0 CHECK (price_micro >= 0),
    ADD COLUMN purchase_transfer_id bigint REFERENCES transfers (id),
    ADD COLUMN bundle_id bigint REFERENCES bundles (id),
    ADD COLUMN refund_micro bigint CHECK (refund_micro >= 0),
    ADD COLUMN revoked_by bigint REFERENCES users (id);

-- 10% of a referred user's first qualifying purchase, paid once: the unique key makes it so.
CREATE TABLE referral_rewards (
    id                  bigserial PRIMARY KEY,
    referred_user_id    bigint NOT NULL UNIQUE REFERENCES users (id),
    referrer_id         bigint NOT NULL REFERENCES users (id),
    purchase_transfer_id bigint NOT NULL REFERENCES transfers (id),
    bonus_transfer_id   bigint NOT NULL REFERENCES transfers (id),
    amount_micro        bigint NOT NULL CHECK (amount_micro > 0),
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX referral_rewards_referrer_idx ON referral_rewards (referrer_id);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, id DESC);
