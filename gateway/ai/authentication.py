"""The AI path's authentication: the API key from wherever the SDK sends it, resolved through Redis
(record and request limits in one script call) and PostgreSQL on a miss; the tokens-per-minute
reservations of a key; a refusal as the error its state means."""

from __future__ import annotations

import ipaddress
import logging
import math
from dataclasses import dataclass
from typing import Any, NoReturn
from importlib import resources

import asyncpg
import orjson
from aiohttp import web
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from gateway.accounts import api_keys
from gateway.accounts.credential_cache import CredentialOutbox
from gateway.accounts.limit_keys import user_ai_minute_key, user_ai_minute_key_around_id
from gateway.core.clock import Clock
from gateway.core.config import Settings
from gateway.core.errors import Forbidden, RateLimited, Unauthenticated
from gateway.core.failures import REDIS_FAILURES
from gateway.core.lua_scripts import composed
from gateway.core.redis_client import RedisClient
from gateway.core.redis_pipeline import ScriptPipeline, pipeline_connections

log = logging.getLogger(__name__)

SCRIPT = resources.files("gateway.ai").joinpath("lua/api_key.lua").read_text()
TOKENS_SCRIPT = resources.files("gateway.ai").joinpath("lua/api_key_tokens.lua").read_text()
# A single Redis: the key's check and the user's minute in one call, composed from the same sources.
ONE_CALL_SCRIPT = composed(resources.files("gateway.ai").joinpath("lua/api_key_one_call.lua").read_text(),
                           {"api_key": SCRIPT, "counter": TOKENS_SCRIPT})
WINDOW_TTL_MS = 120_000  # a minute's counter outlives the next minute, which weighs it
USER_MINUTE_AROUND_ID = tuple(user_ai_minute_key_around_id())
# Principals remembered per record as Redis returned it (see ApiKeyAuthenticator.principals).
PRINCIPALS_CACHED_MAX = 4096


@dataclass(frozen=True, slots=True)
class KeyPrincipal:
    key_id: int
    user_id: int
    allowed_models: frozenset[str]
    ip_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    expires_ms: int  # 0 = never
    tpm_limit: int
    key_hash: bytes  # names the key's Redis windows
    account_id: int = 0  # the user's ledger account; 0 = not on the record, look it up

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


class ApiKeyAuthenticator:
    """Resolves an API key to its principal, counting the request against its limits."""

    def __init__(self, settings: Settings, redis: RedisClient, pool: asyncpg.Pool, clock: Clock,
                 outbox: CredentialOutbox) -> None:
        self.settings = settings
        self.outbox = outbox
        self.redis = redis
        self.pool = pool
        self.clock = clock
        self.script = redis.register_script(SCRIPT)
        self.tokens_script = redis.register_script(TOKENS_SCRIPT)
        # A single Redis has no slot rule: the key's and the user's calls are one (decision 0023), and
        # the calls of concurrent requests go out together through the auto-pipeline (decisions 0022,
        # 0028) instead of one pooled redis-py round trip each. A cluster keeps redis-py's routing.
        self.one_call_script = None if settings.redis_cluster else redis.register_script(ONE_CALL_SCRIPT)
        # The principal parsed from an 'ok' record, keyed by the record's own fields as Redis returned
        # them: the parse (JSON lists, networks) is done once, while Redis is still asked on every call.
        # A revoked, disabled or changed key gets another reply (a refusal, other fields), so nothing
        # here can outlive a revocation (decisions 0015, 0028). Bounded: full, it starts again.
        self.principals: dict[tuple, KeyPrincipal] = {}
        self.pipeline: ScriptPipeline | None = None
        if self.one_call_script is not None and not isinstance(redis, RedisCluster):  # the same: a single Redis
            self.pipeline = ScriptPipeline(pipeline_connections(redis), timeout_s=settings.redis_timeout_s,
                                           lanes=settings.redis_pipeline_lanes)

    async def authenticate(self, key: str) -> KeyPrincipal | Refusal:
        if not api_keys.looks_valid(key):
            return Refusal("unknown")
        key_hash = api_keys.digest(key)
        queued = self.outbox.refusal(key_hash)
        if queued is not None:  # a revocation still on its way to Redis wins (decision 0015)
            return Refusal(queued)
        now_s = self.clock.now_s()
        try:
            reply = await self._run(key_hash, [], now_s)
            if reply[0] == "miss":
                reply = await self._run(key_hash, await self._fill(key_hash), now_s)
            if reply[0] == "ok" and self.one_call_script is None:
                reply = await self._admit_plan(key_hash, reply, now_s)
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
            reserved = await self._call(
                self.tokens_script, [window, f"tg:{{{tag}}}:tpm:{int(minute) - 1}"],
                [tokens, principal.tpm_limit, int((60 - into) / 60 * 1000), WINDOW_TTL_MS])
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
            await self._call(self.tokens_script, [window, window], [tokens, 0, 0, WINDOW_TTL_MS])
        except REDIS_FAILURES:
            log.warning("redis unavailable: token window %s not corrected", window)

    async def close(self) -> None:
        if self.pipeline is not None:
            await self.pipeline.close()

    # -- internals ------------------------------------------------------------------------------

    async def _call(self, script: AsyncScript, keys: list[str], args: list) -> Any:
        """One script call: through the auto-pipeline on a single Redis, redis-py's own on a cluster."""
        if self.pipeline is not None:
            return await self.pipeline.evalsha(script, keys, args)
        return await script(keys=keys, args=args)

    async def _run(self, key_hash: bytes, fill: list[str], now_s: float) -> list:
        minute, into = divmod(now_s, 60)
        minute = int(minute)
        tag = key_hash.hex()
        keys = [api_keys.record_key(key_hash), f"tg:{{{tag}}}:rpm:{minute}", f"tg:{{{tag}}}:rpm:{minute - 1}",
                f"tg:{{{tag}}}:tpm:{minute}", f"tg:{{{tag}}}:tpm:{minute - 1}"]
        weight = int((60 - into) / 60 * 1000)
        until_next_ms = int((60 - into) * 1000) + 1
        args: list[str | int] = [weight, 120_000, until_next_ms, minute, *fill]
        if self.one_call_script is not None:  # the user's minute counted in the same call
            reply = await self._call(self.one_call_script, keys, [*USER_MINUTE_AROUND_ID, WINDOW_TTL_MS, *args])
        else:
            reply = await self.script(keys=keys, args=args)
        return [part.decode() if isinstance(part, bytes) else part for part in reply]

    async def _admit_plan(self, key_hash: bytes, reply: list, now_s: float) -> list:
        """The plan's requests per minute, counted in the user's own slot after the key's slot admitted
        the request (decision 0023); refused, the key's count of this request is taken back."""
        plan_rpm = int(reply[9] or 0) if len(reply) > 9 else 0
        if plan_rpm <= 0:
            return reply
        minute, into = divmod(now_s, 60)
        minute, user_id = int(minute), reply[2]
        weight = int((60 - into) / 60 * 1000)
        admitted = await self.tokens_script(
            keys=[user_ai_minute_key(user_id, minute), user_ai_minute_key(user_id, minute - 1)],
            args=[1, plan_rpm, weight, WINDOW_TTL_MS])
        if admitted:
            return reply
        key_minute = f"tg:{{{key_hash.hex()}}}:rpm:{minute}"
        try:
            await self.tokens_script(keys=[key_minute, key_minute], args=[-1, 0, 0, WINDOW_TTL_MS])
        except REDIS_FAILURES as error:  # the refusal stands; the key's count ages out with its minute
            log.warning("a refused request not taken back from key %s's count (%s)", reply[1], type(error).__name__)
        return ["rate_limited", "plan", plan_rpm, int((60 - into) * 1000) + 1]

    async def _fill(self, key_hash: bytes) -> list[str]:
        row = await api_keys.find(self.pool, key_hash)
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
                "account_id", str(row["account_id"]), str(ttl_ms)]

    def _from_reply(self, reply: list, key_hash: bytes) -> KeyPrincipal | Refusal:
        state = reply[0]
        if state == "rate_limited":
            return Refusal("rate_limited", reply[1], int(reply[2]), max(1, -(-int(reply[3]) // 1000)))
        if state != "ok":
            return Refusal(state)
        record = (key_hash, *reply[1:9])
        principal = self.principals.get(record)
        if principal is not None:
            if principal.expires_ms and principal.expires_ms <= self.clock.now_ms():
                return Refusal("expired")
            return principal
        account_id = int(reply[8]) if len(reply) > 8 and reply[8] else 0  # records cached before it had one
        found = self._principal(key_hash, int(reply[1]), int(reply[2]), reply[3], reply[4], int(reply[5]),
                                int(reply[7]), account_id)
        if isinstance(found, KeyPrincipal):
            if len(self.principals) >= PRINCIPALS_CACHED_MAX:
                self.principals.clear()
            self.principals[record] = found
        return found

    def _from_fields(self, fields: dict[str, str], key_hash: bytes) -> KeyPrincipal | Refusal:
        if fields.get("state") != "ok":
            return Refusal(fields.get("state", "unknown"))
        return self._principal(key_hash, int(fields["key_id"]), int(fields["user_id"]), fields["models"],
                               fields["ips"], int(fields["expires_ms"]), int(fields["tpm"]),
                               int(fields.get("account_id") or 0))

    def _principal(self, key_hash: bytes, key_id: int, user_id: int, models: str, ips: str, expires_ms: int,
                   tpm: int, account_id: int) -> KeyPrincipal | Refusal:
        if expires_ms and expires_ms <= self.clock.now_ms():
            return Refusal("expired")
        return KeyPrincipal(key_id, user_id, frozenset(orjson.loads(models)),
                            tuple(ipaddress.ip_network(n) for n in orjson.loads(ips)), expires_ms, tpm, key_hash,
                            account_id)


def api_key_of(request: web.Request) -> str:
    """The key from wherever the SDK sends it: Bearer, x-api-key, x-goog-api-key or ?key=."""
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() == "bearer" and credential.strip():
        return credential.strip()
    return (request.headers.get("x-api-key") or request.headers.get("x-goog-api-key")
            or request.query.get("key") or "").strip()


async def authenticate(keys: ApiKeyAuthenticator, request: web.Request) -> KeyPrincipal:
    """The calling key's principal, counted against its request limits; refused as its state means."""
    key = api_key_of(request)
    if not key:
        raise Unauthenticated("missing API key", code="missing_api_key")
    result = await keys.authenticate(key)
    if isinstance(result, Refusal):
        refuse(result)
    return result


def refuse(refusal: Refusal) -> NoReturn:
    if refusal.state == "rate_limited":
        raise RateLimited(f"rate limit reached ({refusal.limit_name}: {refusal.limit} per minute)",
                          code="rate_limit_exceeded", headers={"Retry-After": str(refusal.retry_after_s)})
    if refusal.state == "disabled":
        raise Forbidden("account disabled", code="account_disabled")
    message = {"revoked": "API key revoked", "expired": "API key expired"}.get(refusal.state, "invalid API key")
    raise Unauthenticated(message, code="invalid_api_key")
