"""Brakes at the login door: a per-address window on login, register and magic-link, and failed
logins counted per (email, address) and per email (ATTACK-2026-12-01 L7, decision 0014).

The owner is not locked out by someone else's guessing: a pair pauses after its own failures, and
the higher per-email count pauses only the addresses that have failed on that email, so a correct
password from an address that has not failed still gets in. Redis down: the brakes are skipped
(logged), never a refusal of every login.
"""

from __future__ import annotations

import hashlib
import logging
import os

from aiohttp import web

from gateway.core.addresses import address_group
from gateway.core.failures import REDIS_FAILURES
from gateway.core.errors import RateLimited
from gateway.core.app_keys import CLOCK, REDIS, SETTINGS
from gateway.core.middleware import CALL

log = logging.getLogger(__name__)

WINDOW_S = 60
# The hash tag keeps an email's counters in one Redis Cluster slot, so one MGET / MULTI reads both.
EMAIL_FAILURES_KEY = "tg:login:{{{}}}:fail"
PAIR_FAILURES_KEY = "tg:login:{{{}}}:fail:{}"
ADDRESS_KEY = "tg:auth:ip:{}"


async def admit(request: web.Request) -> None:
    """Count this login, registration or magic-link request against its address; 429 past the limit.

    A sliding log of the last minute's requests (a fixed minute would admit twice the limit
    around its boundary, and makes the limit depend on when in the minute one starts)."""
    limit = request.app[SETTINGS].auth_ip_limit_per_min
    if limit <= 0:
        return
    now_ms = request.app[CLOCK].now_ms()
    window_ms = WINDOW_S * 1000
    key = ADDRESS_KEY.format(address_group(request[CALL].client_ip))
    try:
        async with request.app[REDIS].pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, "-inf", now_ms - window_ms)
            pipe.zadd(key, {os.urandom(8).hex(): now_ms})
            pipe.zcard(key)
            pipe.zrange(key, 0, 0, withscores=True)
            pipe.pexpire(key, window_ms)
            _, _, count, oldest, _ = await pipe.execute()
    except REDIS_FAILURES:
        log.warning("login throttle unavailable")
        return
    if count > limit:
        oldest_ms = int(oldest[0][1]) if oldest else now_ms
        retry_s = max(1, -(-(oldest_ms + window_ms - now_ms) // 1000))
        raise RateLimited(f"too many sign-in requests from this address; at most {limit} a minute",
                          code="too_many_requests", headers={"Retry-After": str(retry_s)})


class Failures:
    """The failed-login counters of one (email, address) pair."""

    def __init__(self, request: web.Request, email: str) -> None:
        digest = hashlib.sha256(email.lower().encode()).hexdigest()
        self._request = request
        self._email_key = EMAIL_FAILURES_KEY.format(digest)
        self._pair_key = PAIR_FAILURES_KEY.format(digest, address_group(request[CALL].client_ip))

    async def refuse_if_paused(self) -> None:
        settings = self._request.app[SETTINGS]
        try:
            stored = await self._request.app[REDIS].mget(self._pair_key, self._email_key)
        except REDIS_FAILURES:
            log.warning("login throttle unavailable")
            return
        pair, email = (int(value or 0) for value in stored)
        if pair >= settings.login_failures_per_ip_max or (
                pair > 0 and email >= settings.login_failures_per_email_max):
            raise RateLimited("too many failed logins; try again later", code="too_many_attempts",
                              headers={"Retry-After": str(settings.login_failure_window_s)})

    async def count(self) -> None:
        window_s = self._request.app[SETTINGS].login_failure_window_s
        try:
            async with self._request.app[REDIS].pipeline(transaction=True) as pipe:
                for key in (self._pair_key, self._email_key):
                    pipe.incr(key)
                    pipe.expire(key, window_s, nx=True)
                await pipe.execute()
        except REDIS_FAILURES:
            log.warning("login throttle unavailable")

    async def forget(self) -> None:
        """A correct password clears this pair's failures (not the email's: others may be guessing)."""
        try:
            await self._request.app[REDIS].delete(self._pair_key)
        except REDIS_FAILURES:
            log.warning("login throttle unavailable")
