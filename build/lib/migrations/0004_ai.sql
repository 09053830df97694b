-- Metered AI routes: API keys, the model price table, and one usage row per call.

CREATE TABLE api_keys (
    id              bigserial PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users (id),
    -- The first characters of the key ("tg_" + 8), shown in lists; the key itself only as SHA-256.
    prefix          text NOT NULL CHECK (prefix ~ '^tg_[A-Za-z0-9_-]{8}$'),
    key_hash        bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    name            text NOT NULL DEFAULT '' CHECK (length(name) <= 100),
    -- Empty = every priced model.
    allowed_models  text[] NOT NULL DEFAULT '{}',
    -- Empty = any client address.
    ip_allowlist    cidr[] NOT NULL DEFAULT '{}',
    -- 0 = no limit of the key's own (the user's plan limit still applies).
    rpm_limit       integer NOT NULL DEFAULT 0 CHECK (rpm_limit >= 0),
    tpm_limit       integer NOT NULL DEFAULT 0 CHECK (tpm_limit >= 0),
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz,
    revoked_at      timestamptz,
    CHECK (expires_at IS NULL OR expires_at > created_at)
);
CREATE INDEX api_keys_user_idx ON api_keys (user_id, id DESC);

CREATE TABLE model_prices (
    model                        text PRIMARY KEY CHECK (length(model) BETWEEN 1 AND 200),
    provider                     text NOT NULL CHECK (provider IN ('openai', 'anthropic', 'gemini')),
    -- Micro-credits per million tokens.
    input_per_mtok_micro         bigint NOT NULL CHECK (input_per_mtok_micro >= 0),
    output_per_mtok_micro        bigint NOT NULL CHECK (output_per_mtok_micro >= 0),
    cached_input_per_mtok_micro  bigint NOT NULL CHECK (cached_input_per_mtok_micro >= 0),
    -- The output ceiling a hold assumes when a request names no max_tokens.
    max_output_tokens            integer NOT NULL DEFAULT 16384 CHECK (max_output_tokens > 0),
    updated_at                   timestamptz NOT NULL DEFAULT now(),
    updated_by                   bigint REFERENCES users (id)
);

INSERT INTO model_prices (model, provider, input_per_mtok_micro, output_per_mtok_micro,
                          cached_input_per_mtok_micro, max_output_tokens) VALUES
    ('gpt-4o-mini', 'openai', 150000, 600000, 75000, 16384),
    ('gpt-4o', 'openai', 2500000, 10000000, 1250000, 16384),
    ('o3-mini', 'openai', 1100000, 4400000, 550000, 100000),
    ('text-embedding-3-small', 'openai', 20000, 0, 20000, 1),
    ('claude-3-5-haiku-latest', 'anthropic', 800000, 4000000, 80000, 8192),
    ('claude-sonnet-4-5', 'anthropic', 3000000, 15000000, 300000, 64000),
    ('claude-haiku-4-5', 'anthropic', 1000000, 5000000, 100000, 64000),
    ('gemini-2.0-flash', 'gemini', 100000, 400000, 25000, 8192),
    ('gemini-2.5-flash', 'gemini', 300000, 2500000, 75000, 65536),
    ('gemini-2.5-pro', 'gemini', 1250000, 10000000, 310000, 65536);

CREATE TABLE ai_usage (
    id                  bigserial PRIMARY KEY,
    request_id          text NOT NULL,
    api_key_id          bigint REFERENCES api_keys (id),
    user_id             bigint NOT NULL REFERENCES users (id),
    provider            text NOT NULL,
    model               text NOT NULL,
    input_tokens        bigint NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    cached_input_tokens bigint NOT NULL DEFAULT 0 CHECK (cached_input_tokens >= 0),
    output_tokens       bigint NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    -- What the usage costs at the price in force, and what was charged (capped at the hold).
    cost_micro          bigint NOT NULL DEFAULT 0 CHECK (cost_micro >= 0),
    charged_micro       bigint NOT NULL DEFAULT 0 CHECK (charged_micro >= 0),
    hold_transfer_id    bigint REFERENCES transfers (id),
    outcome             text NOT NULL,
    stream              boolean NOT NULL DEFAULT false,
    usage_source        text NOT NULL DEFAULT 'upstream' CHECK (usage_source IN ('upstream', 'streamed', 'none')),
    latency_ms          integer NOT NULL DEFAULT 0,
    upstream_ms         integer NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL
);
CREATE INDEX ai_usage_user_idx ON ai_usage (user_id, id DESC);
CREATE INDEX ai_usage_key_idx ON ai_usage (api_key_id, id DESC);
