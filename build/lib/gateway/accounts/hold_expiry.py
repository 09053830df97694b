"""Background task: void the holds whose time is up, so held credits return without a request."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import asyncpg

import ledger
from gateway.core.clock import Clock
from gateway.core.failures import POSTGRES_FAILURES

log = logging.getLogger(__name__)


async def expire_once(pool: asyncpg.Pool, clock: Clock) -> int:
    """One sweep; safe from every worker at once (each hold is resolved exactly once)."""
    now = dt.datetime.fromtimestamp(clock.now_s(), dt.timezone.utc)
    async with pool.acquire() as connection:
        return await ledger.expire_holds(connection, now=now)


async def run(pool: asyncpg.Pool, clock: Clock, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            expired = await expire_once(pool, clock)
            if expired:
                log.info("voided %d expired hold(s)", expired)
        except POSTGRES_FAILURES as error:
            log.warning("hold expiry sweep failed: %s", type(error).__name__)
