"""Access tokens: generation, hashing and their PostgreSQL rows (plaintext is shown once, never stored)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

import asyncpg

SCOPES = ("full", "certificates_only")
TOKEN_LENGTH = 64
# token_urlsafe(48) yields exactly 64 characters from the URL-safe alphabet.
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{64}$")

INSERT = """
INSERT INTO access_tokens (user_id, token_hash, scope, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5)
RETURNING id"""

SELECT_BY_HASH = """
SELECT t.id, t.user_id, t.scope, t.expires_at, t.revoked_at, u.plan, u.is_active,
       b.device_id AS bound_device, b.last_seen_at AS bound_at
FROM access_tokens t JOIN users u ON u.id = t.user_id LEFT JOIN device_bindings b ON b.token_id = t.id
WHERE t.token_hash = $1"""

REVOKE = """
UPDATE access_tokens SET revoked_at = $2
WHERE id = $1 AND revoked_at IS NULL
RETURNING token_hash"""

SELECT_HASH = "SELECT token_hash, revoked_at FROM access_tokens WHERE id = $1"


def generate() -> str:
    return secrets.token_urlsafe(48)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def looks_valid(token: str) -> bool:
    return TOKEN_PATTERN.match(token) is not None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    id: int
    token: str
    scope: str
    expires_at: dt.datetime


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: int
    user_id: int
    scope: str
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    plan: str
    user_active: bool
    # The device bound while Redis was down (device_bindings), "" when none.
    bound_device: str = ""
    bound_ms: int = 0


async def issue(connection: asyncpg.Connection | asyncpg.Pool, *, user_id: int, hours: float,
                scope: str, now: dt.datetime) -> IssuedToken:
    assert scope in SCOPES, scope
    assert hours > 0, hours
    token = generate()
    expires_at = now + dt.timedelta(hours=hours)
    token_id = await connection.fetchval(INSERT, user_id, digest(token), scope, now, expires_at)
    return IssuedToken(id=token_id, token=token, scope=scope, expires_at=expires_at)


async def find(pool: asyncpg.Pool, token_hash: bytes) -> TokenRow | None:
    row = await pool.fetchrow(SELECT_BY_HASH, token_hash)
    if row is None:
        return None
    return TokenRow(id=row["id"], user_id=row["user_id"], scope=row["scope"],
                    expires_at=row["expires_at"], revoked_at=row["revoked_at"],
                    plan=row["plan"], user_active=row["is_active"], bound_device=row["bound_device"] or "",
                    bound_ms=int(row["bound_at"].timestamp() * 1000) if row["bound_at"] else 0)


async def revoke(pool: asyncpg.Pool, token_id: int, *, now: dt.datetime) -> bytes | None:
    """Mark a token revoked; returns its hash, or None when there is no such token.

    Revoking an already revoked token is not an error: the hash is still returned so callers
    can (re)write the cache tombstone.
    """
    token_hash = await pool.fetchval(REVOKE, token_id, now)
    if token_hash is not None:
        return token_hash
    row = await pool.fetchrow(SELECT_HASH, token_id)
    return None if row is None else row["token_hash"]
