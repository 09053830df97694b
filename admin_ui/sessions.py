"""Sessions of the admin UI, kept in PostgreSQL (admin_sessions, decision 0018): the cookie holds a
random token whose SHA-256 names the row; each session carries its CSRF token. A session ends at
logout, at its expiry or idle limit, and when its user is deactivated or stops being staff (a
trigger deletes it; the lookup checks the user's state as well)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import asyncpg
from aiohttp import web

from gateway.accounts import users
from gateway.core.config import Settings

COOKIE = "tollgate_admin"
# The login form's own CSRF token (double-submit: this cookie and the form field must agree).
LOGIN_COOKIE = "tollgate_admin_login"
PATH = "/admin"
STAFF_ROLES = ("admin", "manager")
# A session's last_seen_at is written at most this often (not on every page).
TOUCH_INTERVAL_S = 60

INSERT = """
INSERT INTO admin_sessions (token_hash, user_id, csrf_token, created_at, last_seen_at, expires_at)
VALUES ($1, $2, $3, $4, $4, $5) RETURNING id"""
# The session and its user, only while both are in good standing (held twice: the trigger of
# migration 0012 deletes the sessions of a deactivated or demoted user).
SELECT = f"""
SELECT s.id AS session_id, s.csrf_token, s.last_seen_at, {', '.join('u.' + c.strip() for c in users.COLUMNS.split(','))}
FROM admin_sessions s JOIN users u ON u.id = s.user_id
WHERE s.token_hash = $1 AND s.expires_at > $2 AND s.last_seen_at > $2 - make_interval(secs => $3)
  AND u.is_active AND u.erased_at IS NULL AND u.role IN ('admin', 'manager')"""
TOUCH = "UPDATE admin_sessions SET last_seen_at = $2 WHERE id = $1"
DELETE = "DELETE FROM admin_sessions WHERE id = $1"
DELETE_EXPIRED = "DELETE FROM admin_sessions WHERE user_id = $1 AND expires_at <= $2"


@dataclass(frozen=True, slots=True)
class Session:
    id: int
    csrf_token: str
    user: users.User


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


async def create(pool: asyncpg.Pool, settings: Settings, user_id: int, now: dt.datetime) -> str:
    """A new session for the user; the token for the cookie (shown nowhere else)."""
    token = new_token()
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(DELETE_EXPIRED, user_id, now)
        await connection.execute(INSERT, digest(token), user_id, new_token(), now,
                                 now + dt.timedelta(seconds=settings.admin_session_ttl_s))
    return token


async def find(pool: asyncpg.Pool, settings: Settings, token: str, now: dt.datetime) -> Session | None:
    """The live session of this cookie value, or None."""
    if not token or len(token) > 100:
        return None
    row = await pool.fetchrow(SELECT, digest(token), now, float(settings.admin_session_idle_s))
    if row is None:
        return None
    fields = dict(row)
    session_id, csrf_token, last_seen = fields.pop("session_id"), fields.pop("csrf_token"), fields.pop("last_seen_at")
    if (now - last_seen).total_seconds() > TOUCH_INTERVAL_S:
        await pool.execute(TOUCH, session_id, now)
    return Session(session_id, csrf_token, users.User(**fields))


async def end(pool: asyncpg.Pool, session_id: int) -> None:
    await pool.execute(DELETE, session_id)


def same_token(presented: str | None, expected: str) -> bool:
    """A constant-time comparison of a presented CSRF token with the expected one."""
    return bool(presented) and hmac.compare_digest(str(presented).encode(), expected.encode())


def set_cookie(response: web.StreamResponse, secure: bool, name: str, value: str, *, path: str,
               max_age_s: int) -> None:
    """`secure`: the admin UI's origin is https (TOLLGATE_ADMIN_PUBLIC_URL, else the public URL)."""
    response.set_cookie(name, value, path=path, max_age=max_age_s, httponly=True, samesite="Strict",
                        secure=secure)


def clear_cookie(response: web.StreamResponse, secure: bool, name: str, *, path: str) -> None:
    set_cookie(response, secure, name, "", path=path, max_age_s=0)
