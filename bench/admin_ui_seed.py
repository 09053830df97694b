"""Seed data for the admin UI bench: 10,000 users and 1,000,000 ledger rows, made by PostgreSQL
itself (generate_series, a few statements), with balances that reconcile."""

from __future__ import annotations

import time

import asyncpg

USERS = 10_000
MANAGERS = 20
# The bench's manager (the first) is assigned this many clients; the rest are spread over the others.
MANAGER_CLIENTS = 100
TRANSFERS = 1_000_000
AI_USAGE_ROWS = 300_000
AUDIT_ROWS = 100_000
TOKENS = 20_000
SESSIONS = 20_000
DAYS = 60

# Ids: 1 the admin, 2..MANAGERS+1 the managers, the rest clients. Emails are user<n>@bench.local.
USERS_SQL = f"""
INSERT INTO users (id, email, username, full_name, role, plan, is_active, referral_code, manager_id, created_at)
SELECT n, 'user' || n || '@bench.local', 'user' || n, 'Bench User ' || n,
       CASE WHEN n = 1 THEN 'admin' WHEN n <= {MANAGERS} + 1 THEN 'manager' ELSE 'client' END,
       (ARRAY['free', 'premium', 'enterprise'])[1 + n % 3], n % 50 <> 0,
       upper(substr(md5(n::text), 1, 12)),
       CASE WHEN n <= {MANAGERS} + 1 THEN NULL
            WHEN n <= {MANAGERS} + 1 + {MANAGER_CLIENTS} THEN 2
            ELSE 3 + n % ({MANAGERS} - 1) END,
       now() - make_interval(days => {DAYS} + 30) + n * interval '10 minutes'
FROM generate_series(1, {USERS}) AS n;
SELECT setval('users_id_seq', {USERS});
INSERT INTO accounts (kind, user_id) SELECT 'user', id FROM users;"""

# In time order (ids follow created_at): a user's deposits (100 credits) outweigh their spending
# (0.1 to 2 credits), so no balance goes below zero. $1..$5: the system accounts' ids.
TRANSFERS_SQL = f"""
INSERT INTO transfers (idempotency_key, request_hash, debit_account_id, credit_account_id, amount_micro,
                       phase, kind, user_id, description, created_at)
SELECT 'bench:' || n, '\\x00'::bytea,
       CASE k.kind WHEN 'deposit' THEN $1 WHEN 'refund' THEN $2 WHEN 'adjustment' THEN $3 ELSE a.id END,
       CASE k.kind WHEN 'deposit' THEN a.id WHEN 'refund' THEN a.id WHEN 'adjustment' THEN a.id
                 WHEN 'purchase' THEN $4 ELSE $5 END,
       CASE k.kind WHEN 'deposit' THEN 100000000 WHEN 'purchase' THEN 1000000 + (n % 1000) * 1000
                 WHEN 'usage' THEN 100000 + (n % 997) * 1000 ELSE 500000 END,
       'posted', k.kind, a.user_id,
       CASE k.kind WHEN 'usage' THEN 'openai gpt-4o-mini' WHEN 'purchase' THEN '1 x 1 h access token'
                 WHEN 'deposit' THEN 'top-up' ELSE 'bench' END,
       now() - make_interval(days => {DAYS}) + n * make_interval(secs => {DAYS} * 86400.0 / {TRANSFERS})
FROM generate_series(1::bigint, {TRANSFERS}) AS n
CROSS JOIN LATERAL (SELECT CASE WHEN n % 20 = 0 THEN 'deposit' WHEN n % 20 < 7 THEN 'purchase'
                                WHEN n % 20 < 18 THEN 'usage' WHEN n % 20 = 18 THEN 'refund'
                                ELSE 'adjustment' END AS kind) k
JOIN accounts a ON a.user_id = {MANAGERS} + 2 + (n * 7919) % ({USERS} - {MANAGERS} - 1);"""

# Every account's four sums from its transfers, as ledger_move keeps them (reconcile checks it).
BALANCES_SQL = """
UPDATE accounts a SET debits_posted = s.debits, credits_posted = s.credits
FROM (SELECT account_id, sum(debit)::bigint AS debits, sum(credit)::bigint AS credits FROM (
        SELECT debit_account_id AS account_id, amount_micro AS debit, 0 AS credit FROM transfers
        UNION ALL SELECT credit_account_id, 0, amount_micro FROM transfers) legs
      GROUP BY account_id) s
WHERE s.account_id = a.id;"""

CREDENTIALS_SQL = f"""
INSERT INTO access_tokens (user_id, token_hash, scope, created_at, expires_at, revoked_at, duration_hours, price_micro)
SELECT {MANAGERS} + 2 + n % ({USERS} - {MANAGERS} - 1), sha256(('token' || n)::bytea), 'full',
       now() - make_interval(hours => n % 48), now() - make_interval(hours => n % 48) + interval '24 hours',
       CASE WHEN n % 10 = 0 THEN now() - interval '1 hour' END, 24, 18000000
FROM generate_series(1, {TOKENS}) AS n;
INSERT INTO api_keys (user_id, prefix, key_hash, name, created_at)
SELECT id, 'tg_' || substr(md5(id::text), 1, 8), sha256(('key' || id)::bytea), 'bench key', now() - interval '90 days'
FROM users WHERE role = 'client';
INSERT INTO proxy_sessions (token_id, device_id, ip, user_agent, requests, bytes_in, bytes_out, started_at,
                            last_seen_at, ended_at)
SELECT 1 + n % {TOKENS}, 'device-' || n, '198.51.100.' || n % 250, 'bench-agent/1.0', n % 500, n * 10, n * 100,
       now() - make_interval(mins => n), now() - make_interval(mins => n) + interval '2 minutes',
       CASE WHEN n > 2000 THEN now() - make_interval(mins => n) + interval '7 minutes' END
FROM generate_series(1, {SESSIONS}) AS n;"""

AI_USAGE_SQL = f"""
INSERT INTO ai_usage (request_id, api_key_id, user_id, provider, model, input_tokens, output_tokens, cost_micro,
                      charged_micro, outcome, usage_source, created_at)
SELECT 'bench-' || n, k.id, k.user_id, m.provider, m.model, 100 + n % 900, 10 + n % 400, 50 + n % 300,
       50 + n % 300, 'ok', 'upstream',
       now() - make_interval(days => {DAYS}) + n * make_interval(secs => {DAYS} * 86400.0 / {AI_USAGE_ROWS})
FROM generate_series(1::bigint, {AI_USAGE_ROWS}) AS n
JOIN api_keys k ON k.id = 1 + (n * 31) % ({USERS} - {MANAGERS} - 1)
JOIN (SELECT row_number() OVER (ORDER BY model) - 1 AS i, model, provider FROM model_prices) m ON m.i = n % 10;"""

AUDIT_SQL = f"""
INSERT INTO audit_log (actor_id, action, target_type, target_id, ip, details, created_at)
SELECT 1 + n % ({MANAGERS} + 1), (ARRAY['user.update', 'credits.adjust', 'token.force_revoke'])[1 + n % 3],
       'user', ({MANAGERS} + 2 + n % ({USERS} - {MANAGERS} - 1))::text, '192.0.2.' || n % 250,
       jsonb_build_object('n', n), now() - make_interval(mins => n)
FROM generate_series(1, {AUDIT_ROWS}) AS n;"""


VACUUMED = ("users", "accounts", "transfers", "access_tokens", "api_keys", "proxy_sessions", "ai_usage", "audit_log")


async def seed(connection: asyncpg.Connection, say=print) -> dict[str, float]:
    """Fill an empty, migrated database; the seconds each part took."""
    timings: dict[str, float] = {}
    system = {row["code"]: row["id"] for row in await connection.fetch(
        "SELECT code, id FROM accounts WHERE code IS NOT NULL")}
    steps = [("users", USERS_SQL, ()),
             ("transfers", TRANSFERS_SQL, (system["payment_clearing"], system["refunds"], system["adjustments"],
                                           system["revenue"], system["revenue"])),
             ("balances", BALANCES_SQL, ()), ("credentials", CREDENTIALS_SQL, ()),
             ("ai_usage", AI_USAGE_SQL, ()), ("audit", AUDIT_SQL, ())]
    for name, sql, arguments in steps:
        started = time.perf_counter()
        if arguments:
            await connection.execute(sql, *arguments)
        else:
            await connection.execute(sql)
        timings[name] = time.perf_counter() - started
        say(f"  seeded {name} in {timings[name]:.1f} s")
    started = time.perf_counter()
    # Index-only scans need the visibility map; autovacuum would set it in time (insert-only tables
    # are vacuumed too), done here at once. A database-wide VACUUM left some tables unmarked.
    for table in VACUUMED:
        await connection.execute(f"VACUUM (ANALYZE) {table}")
    timings["vacuum"] = time.perf_counter() - started
    return timings
