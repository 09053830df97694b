"""Login sessions: JWT pairs, rotating refresh tokens with reuse detection, and magic links."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from dataclasses import dataclass

import asyncpg

from gateway.accounts import jwt_tokens
from gateway.accounts import users
from gateway.core.config import Settings
from gateway.core.errors import Unauthenticated

INSERT_REFRESH = """
INSERT INTO refresh_tokens (jti, family, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)"""
LOCK_REFRESH = "SELECT * FROM refresh_tokens WHERE jti = $1 FOR UPDATE"
USE_REFRESH = "UPDATE refresh_tokens SET used_at = $2 WHERE jti = $1"
REVOKE_FAMILY = "UPDATE refresh_tokens SET revoked_at = $2 WHERE family = $1 AND revoked_at IS NULL"
REVOKE_FAMILY_OF_USER = """
UPDATE refresh_tokens SET revoked_at = $3 WHERE family = $1 AND user_id = $2 AND revoked_at IS NULL"""
SELECT_USER_STATE = "SELECT is_active, role FROM users WHERE id = $1"
# The user behind an access token, and whether its session was ended (reuse detected, or logout).
# One statement, so the check costs the JSON API no extra round trip; a family's rows are revoked
# together, so one revoked row means the session is over. $2 NULL (tokens minted before sessions
# were named) never matches.
SELECT_SESSION_USER = f"""
SELECT {users.COLUMNS},
       EXISTS (SELECT 1 FROM refresh_tokens WHERE family = $2 AND revoked_at IS NOT NULL) AS session_ended
FROM users WHERE id = $1"""
TOUCH_LOGIN = "UPDATE users SET last_login_at = $2 WHERE id = $1"

INSERT_MAGIC = """
INSERT INTO magic_links (user_id, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4)"""
CONSUME_MAGIC = """
UPDATE magic_links SET consumed_at = $2
WHERE token_hash = $1 AND consumed_at IS NULL AND expires_at > $2
RETURNING user_id"""


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int

    def json(self) -> dict:
        return {"access_token": self.access_token, "refresh_token": self.refresh_token,
                "token_type": "bearer", "expires_in": self.expires_in}


async def issue_pair(connection: asyncpg.Connection | asyncpg.Pool, settings: Settings, *, user_id: int,
                     role: str, now: dt.datetime, family: str | None = None) -> TokenPair:
    """A new access token and a refresh token recorded in `family` (a new family on login)."""
    now_s = now.timestamp()
    jti, family = uuid.uuid4().hex, family or uuid.uuid4().hex
    secret = settings.jwt_secret.value
    refresh = jwt_tokens.issue_refresh(secret, user_id=user_id, jti=jti, family=family, now_s=now_s,
                                       ttl_s=settings.refresh_token_ttl_s)
    await connection.execute(INSERT_REFRESH, jti, family, user_id, now,
                             now + dt.timedelta(seconds=settings.refresh_token_ttl_s))
    access = jwt_tokens.issue_access(secret, user_id=user_id, role=role, now_s=now_s,
                                     ttl_s=settings.access_token_ttl_s, family=family)
    return TokenPair(access, refresh, settings.access_token_ttl_s)


async def login(pool: asyncpg.Pool, settings: Settings, *, user_id: int, role: str,
                now: dt.datetime) -> TokenPair:
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(TOUCH_LOGIN, user_id, now)
        return await issue_pair(connection, settings, user_id=user_id, role=role, now=now)


class RefreshReused(Unauthenticated):
    code, message = "refresh_token_reused", "refresh token already used; its session is revoked"


async def rotate(pool: asyncpg.Pool, settings: Settings, refresh_token: str, *,
                 now: dt.datetime) -> TokenPair:
    """Trade a refresh token for a new pair, once. A second use revokes every token of its family."""
    claims = jwt_tokens.decode_refresh(settings.jwt_secret.value, refresh_token, now_s=now.timestamp())
    async with pool.acquire() as connection:
        async with connection.transaction():
            row = await connection.fetchrow(LOCK_REFRESH, claims["jti"])
            if row is None or str(row["user_id"]) != claims["sub"]:
                raise Unauthenticated("unknown refresh token", code="invalid_refresh_token")
            if row["revoked_at"] is not None:
                raise Unauthenticated("refresh token revoked", code="refresh_token_revoked")
            reused = row["used_at"] is not None
            if reused:
                # Someone holds a copy: end the whole session (committed before answering).
                await connection.execute(REVOKE_FAMILY, row["family"], now)
            else:
                user = await connection.fetchrow(SELECT_USER_STATE, row["user_id"])
                if user is None or not user["is_active"]:
                    raise Unauthenticated("account not found or disabled", code="invalid_refresh_token")
                await connection.execute(USE_REFRESH, row["jti"], now)
                return await issue_pair(connection, settings, user_id=row["user_id"], role=user["role"],
                                        now=now, family=row["family"])
        raise RefreshReused()


async def revoke_family(pool: asyncpg.Pool, settings: Settings, refresh_token: str, *, user_id: int,
                        now: dt.datetime) -> None:
    """Logout: the refresh token's whole family stops working (only the owner's own tokens)."""
    try:
        claims = jwt_tokens.decode_refresh(settings.jwt_secret.value, refresh_token, now_s=now.timestamp())
    except Unauthenticated:
        return  # an expired or foreign refresh token has nothing left to revoke
    await pool.execute(REVOKE_FAMILY_OF_USER, claims.get("fam", ""), user_id, now)


async def session_user(db: asyncpg.Pool | asyncpg.Connection, user_id: int,
                       family: str | None) -> tuple[users.User | None, bool]:
    """(the user or None, whether the login session `family` has been ended)."""
    row = await db.fetchrow(SELECT_SESSION_USER, user_id, family)
    if row is None:
        return None, False
    fields = dict(row)
    ended = fields.pop("session_ended")
    return users.User(**fields), ended


def magic_token() -> str:
    return secrets.token_urlsafe(48)  # 64 URL-safe characters


def magic_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def create_magic_link(pool: asyncpg.Pool, settings: Settings, *, user_id: int,
                            now: dt.datetime) -> str:
    token = magic_token()
    await pool.execute(INSERT_MAGIC, user_id, magic_digest(token), now,
                       now + dt.timedelta(seconds=settings.magic_link_ttl_s))
    return token


async def consume_magic_link(connection: asyncpg.Connection, token: str, *, now: dt.datetime) -> int | None:
    """The link's user, marking it consumed; None for unknown, used or expired links."""
    return await connection.fetchval(CONSUME_MAGIC, magic_digest(token), now)
