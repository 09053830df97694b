"""Browser sessions of the desktop path (decision 0020): the cookie's opaque session ids, their
PostgreSQL rows, and the one-time links that open them.

A session id is `<token hash hex>.<secret>`. The token's SHA-256 is the Redis Cluster hash tag of
the token's keys, so the session's own key can carry it and resolve in the token's single script
call; being a hash, it tells nothing of the token. Only the SHA-256 of the secret is stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import NamedTuple

import asyncpg

SECRET_CHARACTERS = 43  # secrets.token_urlsafe(32): 256 random bits
SESSION_ID_PATTERN = re.compile(r"^([0-9a-f]{64})\.([A-Za-z0-9_-]{43})$")
LINK_CODE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43}$")
END_REASONS = ("logout", "token_revoked", "device_conflict")

INSERT_SESSION = """
INSERT INTO browser_sessions (session_hash, token_id, device_id, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5)"""
# The row only counts for the token whose hash the cookie names.
SELECT_SESSION = """
SELECT s.device_id, s.expires_at, s.ended_at
FROM browser_sessions s JOIN access_tokens t ON t.id = s.token_id
WHERE s.session_hash = $1 AND t.token_hash = $2"""
END_SESSION = """
UPDATE browser_sessions s SET ended_at = $3, end_reason = $4
FROM access_tokens t
WHERE s.session_hash = $1 AND t.id = s.token_id AND t.token_hash = $2 AND s.ended_at IS NULL"""
END_TOKEN_SESSIONS = """
UPDATE browser_sessions SET ended_at = $2, end_reason = 'logout' WHERE token_id = $1 AND ended_at IS NULL"""

DELETE_EXPIRED_LINKS = "DELETE FROM browser_session_links WHERE expires_at <= $1"
INSERT_LINK = """
INSERT INTO browser_session_links (code_hash, token_id, device_id, path, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6)"""
# Deleting the row is the single use: of two concurrent exchanges, one gets it.
TAKE_LINK = """
DELETE FROM browser_session_links l USING access_tokens t, users u
WHERE l.code_hash = $1 AND t.id = l.token_id AND u.id = t.user_id
RETURNING l.token_id, l.device_id, l.path, l.expires_at, t.token_hash, t.expires_at AS token_expires_at,
          t.revoked_at, u.is_active"""


class SessionId(NamedTuple):
    """What the cookie names: the token (by its hash) and the session (by its secret's hash). A tuple,
    not a frozen dataclass: made on every browser request, at a third of the cost."""

    token_hash: bytes
    session_hash: bytes


@dataclass(frozen=True, slots=True)
class SessionRow:
    device_id: str
    expires_ms: int
    ended: bool


@dataclass(frozen=True, slots=True)
class OpenedSession:
    cookie_value: str
    expires_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Landing:
    """A redeemed link: the session it opened and where the browser goes next."""

    session: OpenedSession
    path: str


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse(cookie_value: str) -> SessionId | None:
    """The session a cookie value names, or None when it is not one of ours."""
    match = SESSION_ID_PATTERN.fullmatch(cookie_value)
    if match is None:
        return None
    return SessionId(bytes.fromhex(match[1]), digest(match[2]))


def _milliseconds(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


async def open_session(connection: asyncpg.Connection | asyncpg.Pool, *, token_id: int, token_hash: bytes,
                       device_id: str, token_expires_at: dt.datetime, now: dt.datetime,
                       ttl_s: int) -> OpenedSession:
    """A new session of this token for this device; the cookie value is shown nowhere else."""
    secret = secrets.token_urlsafe(32)
    assert len(secret) == SECRET_CHARACTERS
    expires_at = min(now + dt.timedelta(seconds=ttl_s), token_expires_at)
    await connection.execute(INSERT_SESSION, digest(secret), token_id, device_id, now, expires_at)
    return OpenedSession(f"{token_hash.hex()}.{secret}", expires_at)


async def find(pool: asyncpg.Pool, session: SessionId) -> SessionRow | None:
    row = await pool.fetchrow(SELECT_SESSION, session.session_hash, session.token_hash)
    if row is None:
        return None
    return SessionRow(row["device_id"], _milliseconds(row["expires_at"]), row["ended_at"] is not None)


async def end(pool: asyncpg.Pool, session: SessionId, reason: str, now: dt.datetime) -> bool:
    """End one session (its trigger queues the Redis tombstone); False when it had already ended."""
    assert reason in END_REASONS, reason
    status = await pool.execute(END_SESSION, session.session_hash, session.token_hash, now, reason)
    return status.split()[-1] != "0"


async def end_all(pool: asyncpg.Pool, token_id: int, now: dt.datetime) -> int:
    """Log every browser session of a token out; returns how many were open."""
    status = await pool.execute(END_TOKEN_SESSIONS, token_id, now)
    return int(status.split()[-1])


async def make_link(pool: asyncpg.Pool, *, token_id: int, device_id: str, path: str, now: dt.datetime,
                    ttl_s: int) -> tuple[str, dt.datetime]:
    """A one-time code for the link (and its expiry); only its hash is kept."""
    code = secrets.token_urlsafe(32)
    expires_at = now + dt.timedelta(seconds=ttl_s)
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(DELETE_EXPIRED_LINKS, now)
        await connection.execute(INSERT_LINK, digest(code), token_id, device_id, path, now, expires_at)
    return code, expires_at


async def redeem_link(pool: asyncpg.Pool, code: str, *, now: dt.datetime, ttl_s: int) -> Landing | None:
    """Exchange a link's code for a new session, once; None when the code is unknown, used or
    expired, or its token can no longer be used."""
    if not LINK_CODE_PATTERN.fullmatch(code):
        return None
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(TAKE_LINK, digest(code))
        usable = (row is not None and row["expires_at"] > now and row["revoked_at"] is None
                  and row["is_active"] and row["token_expires_at"] > now)
        if not usable:
            return None
        opened = await open_session(connection, token_id=row["token_id"], token_hash=bytes(row["token_hash"]),
                                    device_id=row["device_id"], token_expires_at=row["token_expires_at"],
                                    now=now, ttl_s=ttl_s)
    return Landing(opened, row["path"])
