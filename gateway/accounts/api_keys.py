"""API keys for the AI routes: `tg_` + 43 random characters, stored as SHA-256, checked through
Redis first (record + request limits in one script call) and PostgreSQL on a miss."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import logging
import math
import re
import secrets
from dataclasses import dataclass
from importlib import resources

import asyncpg
import orjson
import redis.asyncio as redis_asyncio

from gateway.core.clock import Clock
from gateway.core.config import Settings
from gateway.accounts.credential_cache import REDIS_FAILURES, CredentialOutbox, api_key_record_key

log = logging.getLogger(__name__)

KEY_PATTERN = re.compile(r"^tg_[A-Za-z0-9_-]{43}$")
PREFIX_LENGTH = 11  # "tg_" + 8
SCRIPT = (resources.files("gateway") / "lua" / "api_key.lua").read_text()
TOKENS_SCRIPT = (resources.files("gateway") / "lua" / "api_key_tokens.lua").read_text()
WINDOW_TTL_MS = 120_000  # a minute's counter outlives the next minute, which weighs it

INSERT = """
INSERT INTO api_keys (user_id, prefix, key_hash, name, allowed_models, ip_allowlist, rpm_limit, tpm_limit,
                      created_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6::cidr[], $7, $8, $9, $10)
RETURNING id"""
SELECT_BY_HASH = """
SELECT k.id, k.user_id, k.allowed_models, k.ip_allowlist::text[] AS ip_allowlist, k.rpm_limit, k.tpm_limit,
       k.expires_at, k.revoked_at, u.is_active, u.plan
FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.key_hash = $1"""
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


@dataclass(frozen=True, slots=True)
class KeyPrincipal:
    key_id: int
    user_id: int
    allowed_models: frozenset[str]
    ip_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    expires_ms: int  # 0 = never
    tpm_limit: int
    key_hash: bytes  # names the key's Redis windows

    def allows_ip(self, client_ip: str) -> bool:
        if not self.ip_networks:
            return True
        try:
            address = ipaddress.ip_address(client_ip)
        except ValueError:
            return False
        return any(address in network for network in self.ip_networks)

    def allows_model(self, model: str) -> bool:
        return not self.allowed_models or model in self.allowed_models


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a key may not be used now: state is unknown | revoked | expired | disabled | rate_limited."""

    state: str
    limit_name: str = ""
    limit: int = 0
    retry_after_s: int = 0


record_key = api_key_record_key


class ApiKeyAuthenticator:
    """Resolves an API key to its principal, counting the request against its limits."""

    def __init__(self, settings: Settings, redis: redis_asyncio.Redis, pool: asyncpg.Pool, clock: Clock,
                 outbox: CredentialOutbox) -> None:
        self.settings = settings
        self.outbox = outbox
        self.redis = redis
        self.pool = pool
        self.clock = clock
        self.script = redis.register_script(SCRIPT)
        self.tokens_script = redis.register_script(TOKENS_SCRIPT)

    async def authenticate(self, key: str) -> KeyPrincipal | Refusal:
        if not looks_valid(key):
            return Refusal("unknown")
        key_hash = digest(key)
        queued = self.outbox.refusal(key_hash)
        if queued is not None:  # a revocation still on its way to Redis wins (decision 0015)
            return Refusal(queued)
        try:
            reply = await self._run(key_hash, [])
            if reply[0] == "miss":
                reply = await self._run(key_hash, await self._fill(key_hash))
        except REDIS_FAILURES:
            # Without Redis: PostgreSQL vouches for the key; per-key request limits pause (holds
            # still bound the money). Logged and counted so the outage is visible.
            log.warning("redis unavailable: API key checked in PostgreSQL, request limits paused")
            return self._from_fields(dict(zip(*[iter(await self._fill(key_hash))] * 2)), key_hash)
        return self._from_reply(reply, key_hash)

    async def reserve_tokens(self, principal: KeyPrincipal, tokens: int) -> str | Refusal | None:
        """Count a call's token bound in the key's TPM window before it runs: the window's name, a
        Refusal when the window is already full, or None when Redis is away (limits pause)."""
        minute, into = divmod(self.clock.now_s(), 60)
        tag = principal.key_hash.hex()
        window = f"tg:{{{tag}}}:tpm:{int(minute)}"
        try:
            reserved = await self.tokens_script(
                keys=[window, f"tg:{{{tag}}}:tpm:{int(minute) - 1}"],
                args=[tokens, principal.tpm_limit, int((60 - into) / 60 * 1000), WINDOW_TTL_MS])
        except REDIS_FAILURES:
            log.warning("redis unavailable: tokens of key %s not reserved", principal.key_id)
            return None
        if not reserved:
            return Refusal("rate_limited", "key_tpm", principal.tpm_limit, max(1, math.ceil(60 - into)))
        return window

    async def correct_tokens(self, window: str, tokens: int) -> None:
        """Replace a call's reservation by its real tokens (`tokens` is the difference; best effort)."""
        if not tokens:
            return
        try:
            await self.tokens_script(keys=[window, window], args=[tokens, 0, 0, WINDOW_TTL_MS])
        except REDIS_FAILURES:
            log.warning("redis unavailable: token window %s not corrected", window)

    async def forget(self, key_hash: bytes) -> None:
        """Push the revocation the database queued with it (migration 0008) to Redis now; never
        fails the caller: until Redis takes it, every gateway refuses the key from memory."""
        await self.outbox.push_from(self.pool)

    # -- internals ------------------------------------------------------------------------------

    async def _run(self, key_hash: bytes, fill: list[str]) -> list:
        now_s = self.clock.now_s()
        minute, into = divmod(now_s, 60)
        minute = int(minute)
        tag = key_hash.hex()
        keys = [record_key(key_hash), f"tg:{{{tag}}}:rpm:{minute}", f"tg:{{{tag}}}:rpm:{minute - 1}",
                f"tg:{{{tag}}}:tpm:{minute}", f"tg:{{{tag}}}:tpm:{minute - 1}"]
        weight = int((60 - into) / 60 * 1000)
        until_next_ms = int((60 - into) * 1000) + 1
        reply = await self.script(keys=keys, args=[weight, 120_000, until_next_ms, minute, *fill])
        return [part.decode() if isinstance(part, bytes) else part for part in reply]

    async def _fill(self, key_hash: bytes) -> list[str]:
        row = await self.pool.fetchrow(SELECT_BY_HASH, key_hash)
        ttl_ms = self.settings.auth_cache_ttl_s * 1000
        if row is None:
            return ["state", "unknown", str(self.settings.auth_negative_ttl_s * 1000)]
        expires_ms = int(row["expires_at"].timestamp() * 1000) if row["expires_at"] else 0
        if row["revoked_at"] is not None:
            state = "revoked"
        elif expires_ms and expires_ms <= self.clock.now_ms():
            state = "expired"
        elif not row["is_active"]:
            state = "disabled"
        else:
            state = "ok"
        if expires_ms:
            ttl_ms = max(1, min(ttl_ms, expires_ms - self.clock.now_ms()))
        plan_rpm = self.settings.plan_limits_per_min.get(row["plan"], 0)
        return ["state", state, "key_id", str(row["id"]), "user_id", str(row["user_id"]),
                "models", orjson.dumps(list(row["allowed_models"])).decode(),
                "ips", orjson.dumps(list(row["ip_allowlist"])).decode(), "expires_ms", str(expires_ms),
                "rpm", str(row["rpm_limit"]), "tpm", str(row["tpm_limit"]), "plan_rpm", str(plan_rpm),
                str(ttl_ms)]

    def _from_reply(self, reply: list, key_hash: bytes) -> KeyPrincipal | Refusal:
        state = reply[0]
        if state == "rate_limited":
            return Refusal("rate_limited", reply[1], int(reply[2]), max(1, -(-int(reply[3]) // 1000)))
        if state != "ok":
            return Refusal(state)
        return self._principal(key_hash, int(reply[1]), int(reply[2]), reply[3], reply[4], int(reply[5]),
                               int(reply[7]))

    def _from_fields(self, fields: dict[str, str], key_hash: bytes) -> KeyPrincipal | Refusal:
        if fields.get("state") != "ok":
            return Refusal(fields.get("state", "unknown"))
        return self._principal(key_hash, int(fields["key_id"]), int(fields["user_id"]), fields["models"],
                               fields["ips"], int(fields["expires_ms"]), int(fields["tpm"]))

    def _principal(self, key_hash: bytes, key_id: int, user_id: int, models: str, ips: str, expires_ms: int,
                   tpm: int) -> KeyPrincipal | Refusal:
        if expires_ms and expires_ms <= self.clock.now_ms():
            return Refusal("expired")
        return KeyPrincipal(key_id, user_id, frozenset(orjson.loads(models)),
                            tuple(ipaddress.ip_network(n) for n in orjson.loads(ips)), expires_ms, tpm, key_hash)
