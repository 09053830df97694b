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


# At most this many holds voided per batch, and batches per sweep: a backlog (holds left by a gateway
# that stopped) drains at up to BATCH_MAX * SWEEP_BATCHES_MAX per interval without one sweep holding a
# connection for long.
BATCH_MAX = 500
SWEEP_BATCHES_MAX = 20


async def expire_once(pool: asyncpg.Pool, clock: Clock) -> int:
    """One sweep: void the holds due now, batch after batch until every one was read (or
    SWEEP_BATCHES_MAX). It reads the table of open holds (migration 0020, decision 0029), so it costs
    what is due, whatever the ledger's age or the rate of holds. Safe from every worker at once (each
    hold is resolved exactly once)."""
    now = dt.datetime.fromtimestamp(clock.now_s(), dt.timezone.utc)
    voided, after = 0, ledger.transfers.FIRST_DUE
    for _ in range(SWEEP_BATCHES_MAX):
        async with pool.acquire() as connection:
            expired, more = await ledger.expire_due_holds(connection, now=now, batch_max=BATCH_MAX, after=after)
        voided += expired
        if more is None:
            break
        after = more  # the next batch reads on from the last hold this one read
    return voided


async def run(pool: asyncpg.Pool, clock: Clock, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            expired = await expire_once(pool, clock)
            if expired:
                log.info("voided %d expired hold(s)", expired)
        except POSTGRES_FAILURES as error:
            log.warning("hold expiry sweep failed: %s", type(error).__name__)
