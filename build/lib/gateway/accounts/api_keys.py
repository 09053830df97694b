"""API keys for the AI routes, the store: `tg_` + 43 random characters, shown once and kept only as
SHA-256, with the row's limits; the AI path's authentication (gateway/ai/authentication.py) reads
them through Redis first and here on a miss."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

import asyncpg

import ledger
from gateway.accounts.credential_cache import api_key_record_key

KEY_PATTERN = re.compile(r"^tg_[A-Za-z0-9_-]{43}$")
PREFIX_LENGTH = 11  # "tg_" + 8

INSERT = """
INSERT INTO api_keys (user_id, prefix, key_hash, name, allowed_models, ip_allowlist, rpm_limit, tpm_limit,
                      created_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6::cidr[], $7, $8, $9, $10)
RETURNING id"""
SELECT_BY_HASH = """
SELECT k.id, k.user_id, k.allowed_models, k.ip_allowlist::text[] AS ip_allowlist, k.rpm_limit, k.tpm_limit,
       k.expires_at, k.revoked_at, u.is_active, u.plan, a.id AS account_id
FROM api_keys k JOIN users u ON u.id = k.user_id LEFT JOIN accounts a ON a.user_id = k.user_id
WHERE k.key_hash = $1"""
REVOKE = """
UPDATE api_keys SET revoked_at = coalesce(revoked_at, $3) WHERE id = $1 AND user_id = $2
RETURNING key_hash"""


def generate() -> str:
    return "tg_" + secrets.token_urlsafe(32)  # 43 URL-safe characters


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def looks_valid(key: str) -> bool:
    return KEY_PATTERN.match(key) is not None


@dataclass(frozen=True, slots=True)
class NewKey:
    id: int
    key: str
    prefix: str


async def create(connection: asyncpg.Connection | asyncpg.Pool, *, user_id: int, name: str,
                 allowed_models: list[str], ip_allowlist: list[str], rpm_limit: int, tpm_limit: int,
                 now: dt.datetime, expires_at: dt.datetime | None) -> NewKey:
    key = generate()
    key_id = await connection.fetchval(INSERT, user_id, key[:PREFIX_LENGTH], digest(key), name, allowed_models,
                                       ip_allowlist, rpm_limit, tpm_limit, now, expires_at)
    return NewKey(key_id, key, key[:PREFIX_LENGTH])


async def revoke(connection: asyncpg.Connection | asyncpg.Pool, *, key_id: int, user_id: int,
                 now: dt.datetime) -> bytes | None:
    """Revoke the user's key; its hash (for the cache tombstone), or None if it is not theirs."""
    value = await connection.fetchval(REVOKE, key_id, user_id, now)
    return bytes(value) if value is not None else None


record_key = api_key_record_key


async def find(pool: asyncpg.Pool, key_hash: bytes) -> asyncpg.Record | None:
    """The key's row with its user's state and ledger account (created here if the user has none
    yet, so the cached record can carry it and a hold needs no account lookup)."""
    row = await pool.fetchrow(SELECT_BY_HASH, key_hash)
    if row is not None and row["account_id"] is None:
        await ledger.user_account(pool, row["user_id"])
        row = await pool.fetchrow(SELECT_BY_HASH, key_hash)
    return row
