"""Authentication of access tokens: on a hit one Redis script call on a single Redis, one per owner
(client IP, token, user) on a Redis Cluster; PostgreSQL on a miss or outage (decisions 0001, 0023)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from dataclasses import dataclass
from typing import NoReturn
import logging

import asyncpg
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from gateway.proxy import browser_sessions, device_bindings
from gateway.core import metrics
from gateway.accounts import access_tokens
from gateway.core.call import Principal
from gateway.core.clock import Clock
from gateway.core.config import Settings
from gateway.accounts.credential_cache import CredentialOutbox, browser_session_key, token_record_key
from gateway.core.failures import POSTGRES_FAILURES, REDIS_FAILURES
from gateway.core.redis_pipeline import ScriptPipeline, pipeline_connections
from gateway.core.errors import Conflict, Forbidden, ServiceUnavailable, Unauthenticated
from gateway.core.redis_client import RedisClient
from gateway.proxy.browser_sessions import SessionId
from gateway.accounts.limit_keys import ip_window_key, user_window_key, user_window_key_around_id
from gateway.proxy.limit_windows import (ONE_CALL_SCRIPT, TOKEN_SCRIPT, UNDO_SCRIPT, UNLIMITED, WINDOW_SCRIPT,
                                         Window, one_call_reply, undo_args, window_of, with_tightest)
from gateway.proxy.rate_limits import LocalWindows, plan_limit, rate_limited

log = logging.getLogger(__name__)
SCRIPT = TOKEN_SCRIPT
record_key = token_record_key
# The script's answers that PostgreSQL must complete: the token's record, a browser session's.
MISSES = frozenset(("miss", "session_miss"))


def _keys(token_hash: bytes, session: SessionId | None) -> list[str]:
    """The token script's keys: all in the token's hash slot (decision 0023)."""
    tag = token_hash.hex()
    keys = [f"tg:{{{tag}}}:rec", f"tg:{{{tag}}}:dev", f"tg:{{{tag}}}:rl"]
    if session is not None:
        keys.append(browser_session_key(token_hash, session.session_hash))
    return keys


@dataclass(frozen=True, slots=True)
class DeviceState:
    """Who holds a token's device binding, as seen without taking it."""

    holder: str
    last_seen_ms: int


SESSION_REFUSALS = {
    "session_unknown": ("invalid_session", "unknown browser session"),
    "session_ended": ("session_ended", "browser session ended"),
    "session_expired": ("session_expired", "browser session expired"),
}


def _refuse(state: str, detail: list) -> NoReturn:
    if state == "unknown":
        raise Unauthenticated("unknown access token")
    if state == "revoked":
        raise Unauthenticated("access token revoked", code="token_revoked")
    if state == "expired":
        raise Unauthenticated("access token expired", code="token_expired")
    if state == "disabled":
        raise Forbidden("account disabled", code="account_disabled")
    if state == "device_conflict":
        retry_s = max(1, -(-int(detail[0]) // 1000))  # rounded up: never invite an early retry
        raise Conflict("token is in use on another device", code="device_conflict",
                       headers={"Retry-After": str(retry_s)})
    if state == "rate_limited":
        raise rate_limited(str(detail[0]), int(detail[1]), int(detail[2]))
    if state in SESSION_REFUSALS:
        raise Unauthenticated(SESSION_REFUSALS[state][1], code=SESSION_REFUSALS[state][0])
    raise AssertionError(f"unexpected authentication state {state!r}")


class Authenticator:
    """Checks a token + device + rate windows; owns the Redis script and the outage fallback."""

    def __init__(self, settings: Settings, redis: RedisClient, pool: asyncpg.Pool,
                 clock: Clock, outbox: CredentialOutbox) -> None:
        self.settings = settings
        self.outbox = outbox
        self.redis = redis
        self.pool = pool
        self.clock = clock
        self.script = redis.register_script(SCRIPT)
        self.window_script = redis.register_script(WINDOW_SCRIPT)
        self.undo_script = redis.register_script(UNDO_SCRIPT)
        self.user_key_around_id = list(user_window_key_around_id())
        # On a cluster redis-py's client routes each per-slot call to its slot's master.
        self.pipeline: ScriptPipeline | None = None
        self.one_call_script: AsyncScript | None = None
        if not isinstance(redis, RedisCluster):  # settings.redis_cluster is false (core/redis_client.py)
            # A single Redis has no slot rule: the three calls are one (decision 0023), and the calls
            # of concurrent requests go out together (decision 0022).
            self.one_call_script = redis.register_script(ONE_CALL_SCRIPT)
            self.pipeline = ScriptPipeline(pipeline_connections(redis), timeout_s=settings.redis_timeout_s,
                                           lanes=settings.redis_pipeline_lanes)
        # At most this many script calls in flight: a full Redis pool must never look like an
        # outage (that would switch to the per-process fallback and loosen device binding).
        self.redis_slots = asyncio.Semaphore(settings.redis_connections_max)
        self.device_idle_ms = settings.device_idle_s * 1000
        self.window_ms = settings.rate_window_s * 1000
        self.redis_skip_until_s = 0.0
        self.local_windows = LocalWindows(self.window_ms)

    async def authenticate(self, token: str, device_id: str, client_ip: str) -> Principal:
        token_hash = self._checked_hash(token)
        self._refuse_queued(token_hash)
        # The window member is ours, never the client's X-Request-Id: a repeated member would
        # overwrite one entry instead of adding one, and the count would never rise.
        reply = await self._run(token_hash, client_ip, [device_id, "use", os.urandom(12).hex()])
        if reply is None:
            return await self._authenticate_from_database(token_hash, device_id, client_ip)
        if reply[0] != "ok":
            _refuse(reply[0], reply[1:])
        return self._principal(reply)

    async def authenticate_session(self, session: SessionId, client_ip: str) -> tuple[Principal, str]:
        """A browser session's request: the same checks and costs as the token's own, for the device
        that opened the session, resolved in the same round trip. Returns who and which device."""
        self._refuse_queued(session.token_hash)
        if self.outbox.refusal(session.session_hash) is not None:
            _refuse("session_ended", [])
        reply = await self._run(session.token_hash, client_ip, ["", "session", os.urandom(12).hex()], session)
        if reply is None:
            return await self._authenticate_session_from_database(session, client_ip)
        if reply[0] == "device_conflict":
            await self._end_session(session)
        if reply[0] != "ok":
            _refuse(reply[0], reply[1:])
        return self._principal(reply), str(reply[8])

    async def peek(self, token: str, device_id: str, client_ip: str) -> tuple[Principal, DeviceState]:
        """Validate a token without binding a device; counts only in the client IP's window."""
        token_hash = self._checked_hash(token)
        self._refuse_queued(token_hash)
        reply = await self._run(token_hash, client_ip, [device_id, "peek", os.urandom(12).hex()])
        if reply is None:
            row = await self._database_row(token_hash)
            active = self.clock.now_ms() - row.bound_ms < self.device_idle_ms
            return self._row_principal(row), DeviceState(row.bound_device if active else "", row.bound_ms)
        if reply[0] != "ok":
            _refuse(reply[0], reply[1:])
        principal = self._principal(reply)
        return principal, DeviceState(str(reply[8]), int(reply[9]))

    async def forget(self, token_hash: bytes) -> None:
        """Push the revocation the database queued with it (migration 0008) to Redis now.

        Never fails the caller: the revocation is committed, and until Redis takes the tombstone
        every gateway refuses the token from its outbox memory (decision 0015).
        """
        await self.outbox.push_from(self.pool)

    # -- internals -------------------------------------------------------------------------

    @staticmethod
    def _checked_hash(token: str) -> bytes:
        if not token:
            raise Unauthenticated("missing X-Access-Token header", code="missing_token")
        if not access_tokens.looks_valid(token):
            raise Unauthenticated("malformed access token")
        return access_tokens.digest(token)

    def _refuse_queued(self, token_hash: bytes) -> None:
        """A revocation still on its way to Redis wins over whatever Redis holds."""
        refusal = self.outbox.refusal(token_hash)
        if refusal is not None:
            _refuse(refusal, [])

    async def _run(self, token_hash: bytes, client_ip: str, args: list[str],
                   session: SessionId | None = None) -> list | None:
        """Run the script(s) (filling the cache on a miss): the token script's answer with the
        tightest window in it, or None when Redis is unreachable."""
        if self.clock.now_s() < self.redis_skip_until_s:
            metrics.labelled(metrics.AUTH_CACHE, "redis_unavailable").inc()
            return None
        keys = _keys(token_hash, session)
        base = [self.clock.now_ms(), args[0], self.device_idle_ms, self.window_ms, args[2], args[1]]
        try:
            if self.one_call_script is not None:
                return await self._run_one_call(token_hash, client_ip, keys, base, session)
            return await self._run_per_slot(token_hash, client_ip, keys, base, session)
        except REDIS_FAILURES:
            self.redis_skip_until_s = self.clock.now_s() + self.settings.redis_retry_after_s
            metrics.labelled(metrics.AUTH_CACHE, "redis_unavailable").inc()
            return None

    async def _run_one_call(self, token_hash: bytes, client_ip: str, keys: list[str], base: list,
                            session: SessionId | None) -> list:
        """A single Redis: the IP's window, the token's keys and the user's window in one call."""
        script, around_id = self.one_call_script, self.user_key_around_id
        assert script is not None
        ip_limit, keys = self.settings.ip_limit_per_min, [ip_window_key(client_ip), *keys]
        nested = await self._call_script(script, keys, [ip_limit, *around_id, *base])
        ip = window_of(nested[1], ip_limit) if nested[1] else UNLIMITED
        if not ip.admitted:
            return nested[0]
        if nested[0][0] in MISSES:
            # The IP's window has counted this request: the filled call does not count it again.
            fill = await self._miss_fill(nested[0][0], token_hash, session)
            nested = await self._call_script(script, keys, [0, *around_id, *base, *fill])
        else:
            metrics.labelled(metrics.AUTH_CACHE, "redis_hit").inc()
        return one_call_reply(nested, ip, str(base[5]))

    async def _run_per_slot(self, token_hash: bytes, client_ip: str, keys: list[str], base: list,
                            session: SessionId | None) -> list:
        """A Redis Cluster: one call per owner's hash slot, in the order of decision 0023."""
        now_ms, member = base[0], base[4]
        # The client IP's window first: a full one refuses before the token is even looked up.
        ip = await self._admit(ip_window_key(client_ip), self.settings.ip_limit_per_min, now_ms, member)
        if not ip.admitted:
            return ["rate_limited", "ip", ip.limit, ip.reset_ms]
        reply = await self._call_script(self.script, keys, base)
        if reply[0] in MISSES:
            fill = await self._miss_fill(reply[0], token_hash, session)
            reply = await self._call_script(self.script, keys, base + fill)
        else:
            metrics.labelled(metrics.AUTH_CACHE, "redis_hit").inc()
        if reply[0] == "ok" and base[5] != "peek":
            reply = await self._admit_user(keys, reply, ip, now_ms, member)
        return reply

    async def _miss_fill(self, state: str, token_hash: bytes, session: SessionId | None) -> list:
        """What PostgreSQL says of a record Redis lacks: the token's, and a browser session's."""
        metrics.labelled(metrics.AUTH_CACHE, "postgres_fallback").inc()
        fill = await self._fill_values(token_hash)
        if state == "session_miss":
            assert session is not None
            fill += await self._session_fill(session)
        return fill

    async def _admit(self, key: str, limit: int, now_ms: int, member: str) -> Window:
        """Admit the request in a window of its own slot (or not: then it records nothing)."""
        if limit <= 0:
            return UNLIMITED
        reply = await self._call_script(self.window_script, [key], [now_ms, self.window_ms, limit, member])
        return window_of(reply, limit)

    async def _admit_user(self, keys: list[str], reply: list, ip: Window, now_ms: int, member: str) -> list:
        """The user's window, after the token's slot admitted the use: refused, the token's slot
        takes back the use's window entry and binding (a refused request spends nothing)."""
        limit = int(reply[5])
        user = await self._admit(user_window_key(reply[1]), limit, now_ms, member)
        if not user.admitted:
            try:
                await self._call_script(self.undo_script, keys[1:3],
                                        undo_args(member, now_ms, reply, self.device_idle_ms))
            except REDIS_FAILURES as error:  # the refusal stands; the token's entry ages out in a window
                log.warning("a refused use not taken back in the token's slot (%s)", type(error).__name__)
            return ["rate_limited", "user", limit, user.reset_ms]
        return with_tightest(reply, [ip, user])

    async def _call_script(self, script: AsyncScript, keys: list[str], args: list) -> list:
        if not self.redis_slots.locked():
            # A free slot is taken at once; wait_for would cost a task and a timer per request.
            await self.redis_slots.acquire()
        else:
            try:
                await asyncio.wait_for(self.redis_slots.acquire(), self.settings.redis_timeout_s)
            except asyncio.TimeoutError as error:
                raise ServiceUnavailable("gateway overloaded, retry shortly") from error
        try:
            if self.pipeline is not None:
                return await self.pipeline.evalsha(script, keys, args)
            return await script(keys=keys, args=args)
        finally:
            self.redis_slots.release()

    async def close(self) -> None:
        if self.pipeline is not None:
            await self.pipeline.close()

    async def _fill_values(self, token_hash: bytes) -> list:
        try:
            row = await access_tokens.find(self.pool, token_hash)
        except POSTGRES_FAILURES as error:
            raise ServiceUnavailable("credential store unavailable") from error
        now_ms = self.clock.now_ms()
        if row is None:
            return ["unknown", 0, 0, "", 0, 0, self.settings.auth_negative_ttl_s * 1000, "", 0]
        state = "ok"
        if row.revoked_at is not None:
            state = "revoked"
        elif not row.user_active:
            state = "disabled"
        expires_ms = int(row.expires_at.timestamp() * 1000)
        ttl_ms = min(self.settings.auth_cache_ttl_s * 1000, max(1, expires_ms - now_ms))
        if state != "ok":
            ttl_ms = self.settings.auth_cache_ttl_s * 1000
        limit = plan_limit(self.settings.plan_limits_per_min, row.plan)
        # A binding made while Redis was down re-seeds a Redis that came back empty.
        seed = [row.bound_device, row.bound_ms] if now_ms - row.bound_ms < self.device_idle_ms else ["", 0]
        return [state, row.user_id, row.id, row.scope, expires_ms, limit, ttl_ms, *seed]

    def _principal(self, reply: list) -> Principal:
        return Principal(token_id=int(reply[2]), user_id=int(reply[1]), scope=str(reply[3]),
                         expires_ms=int(reply[4]), rate_limit=int(reply[5]),
                         rate_remaining=int(reply[6]), rate_reset_ms=int(reply[7]))

    async def _database_row(self, token_hash: bytes) -> access_tokens.TokenRow:
        try:
            row = await access_tokens.find(self.pool, token_hash)
        except POSTGRES_FAILURES as error:
            # Neither Redis nor PostgreSQL can vouch for the token: never fail open.
            raise ServiceUnavailable("credential store unavailable") from error
        if row is None:
            _refuse("unknown", [])
        if row.revoked_at is not None:
            _refuse("revoked", [])
        if not row.user_active:
            _refuse("disabled", [])
        if row.expires_at <= dt.datetime.fromtimestamp(self.clock.now_s(), dt.timezone.utc):
            _refuse("expired", [])
        return row

    def _row_principal(self, row: access_tokens.TokenRow) -> Principal:
        return Principal(token_id=row.id, user_id=row.user_id, scope=row.scope,
                         expires_ms=int(row.expires_at.timestamp() * 1000),
                         rate_limit=plan_limit(self.settings.plan_limits_per_min, row.plan))

    async def _authenticate_from_database(self, token_hash: bytes, device_id: str,
                                          client_ip: str) -> Principal:
        """Redis is down: PostgreSQL vouches for the token and holds its device binding (shared by
        every worker and gateway); rate windows are this process's own."""
        row = await self._database_row(token_hash)
        principal = self._row_principal(row)
        now_ms = self.clock.now_ms()
        try:
            wait_ms = await device_bindings.bind(self.pool, row.id, device_id, now_ms, self.device_idle_ms)
        except POSTGRES_FAILURES as error:
            raise ServiceUnavailable("credential store unavailable") from error
        if wait_ms is not None:
            _refuse("device_conflict", [wait_ms])
        limit, remaining, reset_ms = self.local_windows.admit(
            [("token", f"t:{row.id}", principal.rate_limit),
             ("user", f"u:{row.user_id}", principal.rate_limit),
             ("ip", f"ip:{client_ip}", self.settings.ip_limit_per_min)],
            now_ms,
        )
        principal.rate_limit, principal.rate_remaining, principal.rate_reset_ms = limit, remaining, reset_ms
        return principal

    # -- browser sessions (decision 0020) ---------------------------------------------------

    async def _session_row(self, session: SessionId) -> browser_sessions.SessionRow | None:
        try:
            return await browser_sessions.find(self.pool, session)
        except POSTGRES_FAILURES as error:
            raise ServiceUnavailable("credential store unavailable") from error

    async def _session_fill(self, session: SessionId) -> list:
        """The session's record for Redis: state, device, expires_ms, ttl_ms (ARGV[16..19])."""
        row = await self._session_row(session)
        if row is None:
            return ["unknown", "", 0, self.settings.auth_negative_ttl_s * 1000]
        if row.ended:
            return ["ended", "", 0, self.settings.auth_cache_ttl_s * 1000]
        ttl_ms = min(self.settings.auth_cache_ttl_s * 1000, max(1, row.expires_ms - self.clock.now_ms()))
        return ["ok", row.device_id, row.expires_ms, ttl_ms]

    async def _authenticate_session_from_database(self, session: SessionId,
                                                  client_ip: str) -> tuple[Principal, str]:
        row = await self._session_row(session)
        if row is None:
            _refuse("session_unknown", [])
        if row.ended:
            _refuse("session_ended", [])
        if row.expires_ms <= self.clock.now_ms():
            _refuse("session_expired", [])
        try:
            principal = await self._authenticate_from_database(session.token_hash, row.device_id, client_ip)
        except Conflict:
            await self._end_session(session)
            raise
        return principal, row.device_id

    async def _end_session(self, session: SessionId) -> None:
        """Another device holds the token: its browser session ends for good (the outbox takes the
        tombstone to Redis). Never fails the refusal it goes with."""
        now = dt.datetime.fromtimestamp(self.clock.now_s(), dt.timezone.utc)
        try:
            await browser_sessions.end(self.pool, session, "device_conflict", now)
        except POSTGRES_FAILURES as error:
            log.warning("browser session not ended after a device conflict (%s)", type(error).__name__)
            return
        await self.outbox.push_from(self.pool)
