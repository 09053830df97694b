"""A user's access tokens and API keys as staff see them, and their revocation by staff: scoped like
the directory (a manager reaches only their clients' credentials; anything else is a 404)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg

from gateway.accounts import api_keys, audit, users
from gateway.accounts.credential_cache import CredentialOutbox
from gateway.accounts.directory import SCOPE, scope_of
from gateway.core.errors import NotFound

TOKEN_FILTERS = "user_id = $1 AND (NOT $2::boolean OR (revoked_at IS NULL AND expires_at > $3))"
COUNT_TOKENS = f"SELECT count(*) FROM access_tokens WHERE {TOKEN_FILTERS}"
SELECT_TOKENS = f"""
SELECT id, scope, created_at, expires_at, revoked_at, duration_hours, price_micro, refund_micro
FROM access_tokens WHERE {TOKEN_FILTERS}
ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5"""
LOCK_TOKEN = f"""
SELECT t.id, t.user_id, t.token_hash, t.revoked_at FROM access_tokens t JOIN users u ON u.id = t.user_id
WHERE t.id = $2 AND {SCOPE} FOR UPDATE OF t"""
FORCE_REVOKE = "UPDATE access_tokens SET revoked_at = $2, revoked_by = $3 WHERE id = $1"
SELECT_KEYS = """
SELECT id, prefix, name, allowed_models, ip_allowlist::text[] AS ip_allowlist, rpm_limit, tpm_limit,
       created_at, expires_at, revoked_at, rotated_at, previous_expires_at
FROM api_keys WHERE user_id = $1 ORDER BY id DESC LIMIT $2"""
KEY_OWNER = f"SELECT k.user_id FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = $2 AND {SCOPE}"


@dataclass(frozen=True, slots=True)
class Revoked:
    token_id: int
    user_id: int
    already_revoked: bool
    revoked_at: dt.datetime


async def count_tokens(db: asyncpg.Pool | asyncpg.Connection, user_id: int, *, active_only: bool,
                       at: dt.datetime) -> int:
    return await db.fetchval(COUNT_TOKENS, user_id, active_only, at)


async def tokens(db: asyncpg.Pool | asyncpg.Connection, user_id: int, *, active_only: bool, at: dt.datetime,
                 limit: int, skip: int = 0) -> list[asyncpg.Record]:
    """The user's access tokens, newest first (never their hashes). Check the scope first."""
    return await db.fetch(SELECT_TOKENS, user_id, active_only, at, limit, skip)


async def force_revoke_token(pool: asyncpg.Pool, outbox: CredentialOutbox, *, actor: users.User,
                             token_id: int | None, at: dt.datetime, ip: str) -> Revoked:
    """Revoke a token at once, without a refund; audited; 404 outside the actor's scope."""
    token = None
    async with pool.acquire() as connection, connection.transaction():
        if token_id is not None:
            token = await connection.fetchrow(LOCK_TOKEN, scope_of(actor), token_id)
        if token_id is None or token is None:
            raise NotFound("no such token", code="token_not_found")
        already_revoked = token["revoked_at"] is not None
        if not already_revoked:
            await connection.execute(FORCE_REVOKE, token_id, at, actor.id)
            await audit.record(connection, actor_id=actor.id, action="token.force_revoke",
                               target_type="access_token", target_id=token_id, ip=ip,
                               details={"user_id": token["user_id"], "refund_micro": None})
    # Rewritten even when already revoked: the tombstone may have expired from the cache.
    # The revocation queued its cache refusal with it (decision 0015): push it to Redis now.
    await outbox.push_from(pool)
    return Revoked(token_id, token["user_id"], already_revoked, token["revoked_at"] if already_revoked else at)


async def keys(db: asyncpg.Pool | asyncpg.Connection, user_id: int, *, limit: int = 100) -> list[asyncpg.Record]:
    """The user's API keys, newest first (never their hashes). Check the scope first."""
    return await db.fetch(SELECT_KEYS, user_id, limit)


async def revoke_key(pool: asyncpg.Pool, outbox: CredentialOutbox, *, actor: users.User, key_id: int | None,
                     at: dt.datetime, ip: str) -> int:
    """Revoke a user's API key as staff; audited; the owner's id. 404 outside the actor's scope."""
    async with pool.acquire() as connection, connection.transaction():
        owner = await connection.fetchval(KEY_OWNER, scope_of(actor), key_id) if key_id is not None else None
        if owner is None or key_id is None:
            raise NotFound("no such key", code="key_not_found")
        await api_keys.revoke(connection, key_id=key_id, user_id=owner, now=at)
        await audit.record(connection, actor_id=actor.id, action="api_key.force_revoke", target_type="api_key",
                           target_id=key_id, ip=ip, details={"user_id": owner})
    await outbox.push_from(pool)
    return owner
