"""Test database: the servers a run starts, and the SQL that empties and re-seeds it before each test."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

RESET_DATABASE = """
SET session_replication_role = replica;  -- the append-only triggers stay on for everyone else
TRUNCATE payment_history, payments, debts, transfers, open_holds, audit_log, proxy_sessions, access_tokens,
         referral_rewards, refresh_tokens, magic_links, bundles, ai_usage, api_keys, model_prices,
         credential_cache_outbox, device_bindings, browser_sessions, browser_session_links, admin_sessions,
         ledger_daily, ledger_days_rolled, ai_usage_daily, ai_usage_days_rolled,
         budgets, budget_holds
         RESTART IDENTITY;
DELETE FROM accounts WHERE kind = 'user';
UPDATE accounts SET debits_posted = 0, credits_posted = 0, debits_pending = 0, credits_pending = 0, owed_micro = 0;
DELETE FROM users;
RESET session_replication_role;
"""
# The default bundles, re-seeded before each test from the migration that defines them.
SEED_BUNDLES = re.search(r"INSERT INTO bundles .*?;", (resources.files("migrations")
                         / "0003_economy.sql").read_text(), re.S).group(0)
SEED_PRICES = re.search(r"INSERT INTO model_prices .*?;", (resources.files("migrations")
                        / "0004_ai.sql").read_text(), re.S).group(0)


@dataclass(frozen=True)
class Servers:
    database_url: str
    redis_url: str
    admin_database_url: str


async def fresh_database(servers: Servers, name: str) -> str:
    """An empty database `name` on the test server (dropped first if a run left one); its URL."""
    connection = await asyncpg.connect(servers.admin_database_url)
    await connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await connection.execute(f'CREATE DATABASE "{name}"')
    await connection.close()
    return servers.admin_database_url.rsplit("/", 1)[0] + "/" + name
