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


# A sweep looks back this far behind the previous complete one: holds placed by a gateway whose clock
# runs behind, or committed a little after that sweep read, are still found.
LOOKBACK = dt.timedelta(minutes=10)
# Every this many sweeps one looks at the whole history again (anything the look-back could miss).
FULL_SWEEP_EVERY = 720


class Sweeper:
    """The expiry sweep of one process: after a complete sweep it looks only at the holds that
    expired since (less LOOKBACK), so its cost follows the rate of holds, not the ledger's age."""

    def __init__(self, pool: asyncpg.Pool, clock: Clock) -> None:
        self.pool, self.clock = pool, clock
        self.expired_after = ledger.transfers.BEGINNING
        self.sweeps = 0

    async def sweep(self) -> int:
        now = dt.datetime.fromtimestamp(self.clock.now_s(), dt.timezone.utc)
        if self.sweeps % FULL_SWEEP_EVERY == 0:
            self.expired_after = ledger.transfers.BEGINNING
        self.sweeps += 1
        async with self.pool.acquire() as connection:
            expired, complete = await ledger.expire_holds_since(connection, now=now,
                                                                expired_after=self.expired_after)
        if complete:
            self.expired_after = now - LOOKBACK
        return expired


async def expire_once(pool: asyncpg.Pool, clock: Clock) -> int:
    """One whole sweep; safe from every worker at once (each hold is resolved exactly once)."""
    return await Sweeper(pool, clock).sweep()


async def run(pool: asyncpg.Pool, clock: Clock, interval_s: float) -> None:
    sweeper = Sweeper(pool, clock)
    while True:
        await asyncio.sleep(interval_s)
        try:
            expired = await sweeper.sweep()
            if expired:
                log.info("voided %d expired hold(s)", expired)
        except POSTGRES_FAILURES as error:
            log.warning("hold expiry sweep failed: %s", type(error).__name__)
