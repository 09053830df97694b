-- Device bindings while Redis is down (decision 0015): the PostgreSQL fallback binds a token to
-- one device across every worker and gateway, and a Redis that comes back empty is re-seeded from
-- here when it fills the token's record, so two devices never share a token across an outage.
CREATE TABLE device_bindings (
    token_id        bigint PRIMARY KEY REFERENCES access_tokens (id),
    device_id       text NOT NULL,
    last_seen_at    timestamptz NOT NULL
);
