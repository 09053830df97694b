"""Erasing a user (decision 0018): their personal data — email, username, name, the addresses and
user agents they came from, device ids, key names and allow-lists — removed or pseudonymised
wherever it is stored, every credential revoked, while the ledger stays as it is.

The user row stays (the append-only transfers and the audit log reference it) under a pseudonym,
`erased-<id>@erased.invalid`, with erased_at set; its account keeps its balance and history, so
reconciliation passes. Login artefacts (refresh tokens, magic links, admin sessions) are deleted;
the audit log is pseudonymised by the one function the database lets change it (migration 0012).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging

import asyncpg

from gateway.accounts import audit, users
from gateway.accounts.credential_cache import CredentialOutbox
from gateway.accounts.directory import user_not_found
from gateway.accounts.limit_keys import ip_window_key
from gateway.accounts.login_throttle import ADDRESS_KEY, EMAIL_FAILURES_KEY
from gateway.core.addresses import address_group
from gateway.core.errors import BadRequest, Forbidden
from gateway.core.failures import REDIS_FAILURES
from gateway.core.redis_client import RedisClient

log = logging.getLogger(__name__)

LOCK_USER = "SELECT id, email, username, full_name, role, erased_at FROM users WHERE id = $1 FOR UPDATE"
ADDRESSES = """
SELECT DISTINCT s.ip FROM proxy_sessions s JOIN access_tokens t ON t.id = s.token_id
WHERE t.user_id = $1 AND s.ip <> ''
UNION SELECT DISTINCT ip FROM audit_log WHERE actor_id = $1 AND ip <> ''"""
TOKEN_HASHES = "SELECT token_hash FROM access_tokens WHERE user_id = $1"
# In this order: credentials first (their triggers queue the cache refusals), then the traces.
STEPS = (
    "UPDATE access_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
    "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2), name = '', ip_allowlist = '{}' WHERE user_id = $1",
    """UPDATE proxy_sessions SET ip = '', user_agent = '', device_id = 'erased', ended_at = coalesce(ended_at, $2)
       WHERE token_id IN (SELECT id FROM access_tokens WHERE user_id = $1)""",
    # Ended already by the tokens' revocation (migration 0014), which also queued their tombstones.
    """UPDATE browser_sessions SET device_id = 'erased', ended_at = coalesce(ended_at, $2),
                                  end_reason = coalesce(end_reason, 'token_revoked')
       WHERE token_id IN (SELECT id FROM access_tokens WHERE user_id = $1)""",
    # A payment keeps its money facts; the email a guest paid with and the link that carried it go.
    "UPDATE payments SET guest_email = NULL, payment_url = '' WHERE user_id = $1 AND $2::timestamptz IS NOT NULL",
)
# Guest payments made with the user's email and not (yet) tied to an account: tied to the erased
# account, so a late provider callback still credits someone the ledger knows, never a new account
# made from an email that is gone.
ADOPT_GUEST_PAYMENTS = """
UPDATE payments SET user_id = $1, guest_email = NULL, payment_url = ''
WHERE user_id IS NULL AND lower(guest_email) = lower($2)"""
# Device bindings and login artefacts: nothing in them is needed once the user is gone.
DELETIONS = (
    "DELETE FROM device_bindings WHERE token_id IN (SELECT id FROM access_tokens WHERE user_id = $1)",
    "DELETE FROM refresh_tokens WHERE user_id = $1",
    "DELETE FROM magic_links WHERE user_id = $1",
    "DELETE FROM admin_sessions WHERE user_id = $1",
)
PSEUDONYMISE = """
UPDATE users SET email = 'erased-' || id || '@erased.invalid', username = NULL, full_name = '',
                 password_hash = NULL, is_active = false, referral_code = NULL, manager_id = NULL,
                 last_login_at = NULL, erased_at = $2
WHERE id = $1"""
ERASE_AUDIT = "SELECT audit_log_erase($1, $2::text[])"
# Login-throttle keys of the email (they name the addresses that failed on it).
SCAN_BATCH = 500


def _texts(user: asyncpg.Record, addresses: list[str]) -> list[str]:
    return [text for text in (user["email"], user["username"] or "", user["full_name"], *addresses) if text]


async def erase(pool: asyncpg.Pool, redis: RedisClient, outbox: CredentialOutbox, *, actor: users.User,
                user_id: int | None, at: dt.datetime, ip: str) -> None:
    """Erase the user (admins only; not oneself, not another admin: demote them first)."""
    if actor.role != "admin":
        raise Forbidden("only an admin may erase a user", code="admin_required")
    async with pool.acquire() as connection, connection.transaction():
        user = await connection.fetchrow(LOCK_USER, user_id) if user_id is not None else None
        if user is None:
            raise user_not_found()
        if user["erased_at"] is not None:
            raise BadRequest("this user is already erased", code="user_erased")
        if user["id"] == actor.id or user["role"] == "admin":
            raise BadRequest("an admin cannot be erased; demote them first", code="cannot_erase_admin")
        addresses = [row["ip"] for row in await connection.fetch(ADDRESSES, user["id"])]
        token_hashes = [bytes(row["token_hash"]) for row in await connection.fetch(TOKEN_HASHES, user["id"])]
        for statement in STEPS:
            await connection.execute(statement, user["id"], at)
        await connection.execute(ADOPT_GUEST_PAYMENTS, user["id"], user["email"])
        for statement in DELETIONS:
            await connection.execute(statement, user["id"])
        await connection.fetchval(ERASE_AUDIT, user["id"], _texts(user, addresses))
        await connection.execute(PSEUDONYMISE, user["id"], at)
        await audit.record(connection, actor_id=actor.id, action="user.erase", target_type="user",
                           target_id=user["id"], ip=ip, details={"tokens": len(token_hashes)})
    await outbox.push_from(pool)  # the revocations reach every gateway's cache now
    await _forget_in_redis(redis, user["email"], addresses, token_hashes)


async def _forget_in_redis(redis: RedisClient, email: str, addresses: list[str],
                           token_hashes: list[bytes]) -> None:
    """Redis keys that name the user's email digest, addresses or device ids (all expire by themselves
    within minutes; deleted now so nothing personal outlives the erasure there either). The failed-login
    counters of the email name the addresses that failed on it: their windows go too."""
    digest = hashlib.sha256(email.lower().encode()).hexdigest()
    email_keys_prefix = EMAIL_FAILURES_KEY.format(digest)
    keys = [f"tg:{{{token_hash.hex()}}}:dev" for token_hash in token_hashes]
    try:
        async for key in redis.scan_iter(match=email_keys_prefix + "*", count=SCAN_BATCH):
            keys.append(key)
            if key.startswith(email_keys_prefix + ":"):
                addresses.append(key.removeprefix(email_keys_prefix + ":"))
        keys += [ADDRESS_KEY.format(address_group(address)) for address in addresses]
        keys += [ip_window_key(address) for address in addresses]
        for start in range(0, len(keys), SCAN_BATCH):
            await redis.delete(*keys[start:start + SCAN_BATCH])
    except REDIS_FAILURES as error:
        log.warning("erasure: Redis keys not deleted (%s); they expire within minutes", type(error).__name__)
