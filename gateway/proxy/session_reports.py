"""Proxy sessions for staff: the open count, lists (all, or one user's), and releasing a token's
device binding so another device may use it at once — within the actor's scope."""

from __future__ import annotations

import datetime as dt
import logging

import asyncpg

from gateway.accounts import audit, users
from gateway.accounts.directory import SCOPE, scope_of
from gateway.core.errors import NotFound
from gateway.core.failures import REDIS_FAILURES
from gateway.core.redis_client import RedisClient

log = logging.getLogger(__name__)

OPEN_COUNT = f"""
SELECT count(*) FROM proxy_sessions s JOIN access_tokens t ON t.id = s.token_id JOIN users u ON u.id = t.user_id
WHERE s.ended_at IS NULL AND {SCOPE}"""
OPEN_COUNT_ALL = "SELECT count(*) FROM proxy_sessions WHERE ended_at IS NULL"
# $2 open only, $3 one user or NULL, $4 a keyset cursor (sessions older than it), $5 the page size.
LIST = f"""
SELECT s.id, s.token_id, s.device_id, s.ip, s.user_agent, s.requests, s.bytes_in, s.bytes_out,
       s.started_at, s.last_seen_at, s.ended_at, t.user_id, u.email
FROM proxy_sessions s JOIN access_tokens t ON t.id = s.token_id JOIN users u ON u.id = t.user_id
WHERE {SCOPE} AND (NOT $2::boolean OR s.ended_at IS NULL) AND ($3::bigint IS NULL OR t.user_id = $3)
  AND ($4::bigint IS NULL OR s.id < $4)
ORDER BY s.id DESC LIMIT $5"""
LOCK_TOKEN = f"""
SELECT t.id, t.user_id, t.token_hash FROM access_tokens t JOIN users u ON u.id = t.user_id
WHERE t.id = $2 AND {SCOPE} FOR UPDATE OF t"""
FORGET_BINDING = "DELETE FROM device_bindings WHERE token_id = $1"
END_SESSIONS = "UPDATE proxy_sessions SET ended_at = $2 WHERE token_id = $1 AND ended_at IS NULL"


def device_key(token_hash: bytes) -> str:
    """The Redis key of a token's device binding (as gateway/proxy/lua/authenticate.lua names it)."""
    return f"tg:{{{token_hash.hex()}}}:dev"


async def open_count(db: asyncpg.Pool | asyncpg.Connection, scope: int | None) -> int:
    if scope is None:  # the partial index of open sessions answers it alone
        return await db.fetchval(OPEN_COUNT_ALL)
    return await db.fetchval(OPEN_COUNT, scope)


async def sessions(db: asyncpg.Pool | asyncpg.Connection, scope: int | None, *, open_only: bool,
                   user_id: int | None, before_id: int | None, limit: int) -> list[asyncpg.Record]:
    """Sessions newest first (keyset by id)."""
    return await db.fetch(LIST, scope, open_only, user_id, before_id, limit)


async def release(pool: asyncpg.Pool, redis: RedisClient, *, actor: users.User, token_id: int | None,
                  at: dt.datetime, ip: str) -> int:
    """Free the token's device binding now (Redis and the PostgreSQL fallback) and end its open
    sessions; the next device to use the token takes it. Audited; the token owner's id."""
    token = None
    async with pool.acquire() as connection, connection.transaction():
        if token_id is not None:
            token = await connection.fetchrow(LOCK_TOKEN, scope_of(actor), token_id)
        if token is None or token_id is None:
            raise NotFound("no such token", code="token_not_found")
        await connection.execute(FORGET_BINDING, token_id)
        await connection.execute(END_SESSIONS, token_id, at)
        await audit.record(connection, actor_id=actor.id, action="token.release_device",
                           target_type="access_token", target_id=token_id, ip=ip,
                           details={"user_id": token["user_id"]})
    try:
        await redis.delete(device_key(bytes(token["token_hash"])))
    except REDIS_FAILURES as error:
        # Released in PostgreSQL; the Redis binding lapses by itself once idle for device_idle_s.
        log.warning("device binding of token %d not released in Redis (%s)", token_id, type(error).__name__)
    return token["user_id"]
