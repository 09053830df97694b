"""API keys for the AI routes, the store: `tg_` + 43 random characters, shown once and kept only as
SHA-256, with the row's limits; the AI path's authentication (gateway/ai/authentication.py) reads
them through Redis first and here on a miss. A key can be changed and rotated (a new secret; the
old one works on until its grace period ends); the database queues the cache refresh of every such
change in the same transaction (migration 0013), so it applies from the key's next request."""

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
# By the key's secret, or by its previous secret during the grace period after a rotation (then
# the key expires for that secret when the grace period ends).
SELECT_BY_HASH = """
SELECT k.id, k.user_id, k.allowed_models, k.ip_allowlist::text[] AS ip_allowlist, k.rpm_limit, k.tpm_limit,
       CASE WHEN k.key_hash = $1 THEN k.expires_at
            ELSE least(k.expires_at, k.previous_expires_at) END AS expires_at,
       k.revoked_at, u.is_active, u.plan, a.id AS account_id
FROM api_keys k JOIN users u ON u.id = k.user_id LEFT JOIN accounts a ON a.user_id = k.user_id
WHERE k.key_hash = $1 OR k.previous_key_hash = $1"""
# The settings a key's owner may change (PATCH), each a column.
SETTINGS = ("name", "allowed_models", "ip_allowlist", "rpm_limit", "tpm_limit", "expires_at")
# NO KEY UPDATE, as the PATCH's own UPDATE takes: it still serialises with a revocation or rotation, but
# not with a key-share lock on the key (a usage row's foreign key took one after the call's budget rows
# until migration 0019; FOR UPDATE here, then the budget's upsert, closed a deadlock with that settlement).
LOCK_LIVE = "SELECT id FROM api_keys WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL FOR NO KEY UPDATE"
ROTATE = """
UPDATE api_keys SET previous_key_hash = key_hash, previous_expires_at = $5, key_hash = $3, prefix = $4,
                    rotated_at = $6
WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $6)
RETURNING id"""
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


async def update(connection: asyncpg.Connection, *, key_id: int, user_id: int, changes: dict[str, object]) -> bool:
    """Change some SETTINGS of the user's live key (built from fixed fragments); False if there is none."""
    assert set(changes) <= set(SETTINGS), changes
    if await connection.fetchval(LOCK_LIVE, key_id, user_id) is None:
        return False
    if changes:
        names = list(changes)
        assignments = ", ".join(f"{name} = ${index}{'::cidr[]' if name == 'ip_allowlist' else ''}"
                                for index, name in enumerate(names, start=3))
        await connection.execute(f"UPDATE api_keys SET {assignments} WHERE id = $1 AND user_id = $2",
                                 key_id, user_id, *(changes[name] for name in names))
    return True


async def rotate(connection: asyncpg.Connection | asyncpg.Pool, *, key_id: int, user_id: int, now: dt.datetime,
                 grace_s: int) -> NewKey | None:
    """A new secret for the user's live key; the old one is accepted until now + grace_s (a secret
    from an earlier rotation is refused at once). None if the key is not theirs or not live."""
    key = generate()
    rotated = await connection.fetchval(ROTATE, key_id, user_id, digest(key), key[:PREFIX_LENGTH],
                                        now + dt.timedelta(seconds=grace_s), now)
    return NewKey(key_id, key, key[:PREFIX_LENGTH]) if rotated is not None else None


record_key = api_key_record_key


async def find(pool: asyncpg.Pool, key_hash: bytes) -> asyncpg.Record | None:
    """The key's row with its user's state and ledger account (created here if the user has none
    yet, so the cached record can carry it and a hold needs no account lookup)."""
    row = await pool.fetchrow(SELECT_BY_HASH, key_hash)
    if row is not None and row["account_id"] is None:
        await ledger.user_account(pool, row["user_id"])
        row = await pool.fetchrow(SELECT_BY_HASH, key_hash)
    return row
