"""Background task: the ledger's gauges for the operator — open holds, their backlog past expiry,
and the drift a periodic reconciliation finds (deploy/prometheus/alerts.yml alerts on them)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time

import asyncpg

import ledger
from gateway.core import metrics
from gateway.core.clock import Clock
from gateway.core.failures import POSTGRES_FAILURES

log = logging.getLogger(__name__)

# The open holds, from the table that holds only them (migration 0020): the read costs what is open,
# not what the ledger ever held.
OPEN_HOLDS = """
SELECT count(*) FILTER (WHERE o.expires_at > $1) AS open,
       count(*) FILTER (WHERE o.expires_at <= $1) AS expired,
       COALESCE(sum(o.amount_micro), 0)::bigint AS held_micro
FROM open_holds o"""
# One reconciliation at a time across every worker and gateway: the others skip their turn.
RECONCILE_LOCK = 0x7011_6A7E_0025


async def count_holds(pool: asyncpg.Pool, clock: Clock) -> None:
    """Set the open-hold gauges from one read."""
    now = dt.datetime.fromtimestamp(clock.now_s(), dt.timezone.utc)
    row = await pool.fetchrow(OPEN_HOLDS, now)
    metrics.OPEN_HOLDS.set(row["open"] + row["expired"])
    metrics.EXPIRED_HOLDS.set(row["expired"])
    metrics.OPEN_HOLDS_MICRO.set(row["held_micro"])


async def reconcile(pool: asyncpg.Pool, clock: Clock) -> ledger.Report | None:
    """Reconcile the ledger and set the drift gauges; None when another worker is at it."""
    async with pool.acquire() as connection:
        if not await connection.fetchval("SELECT pg_try_advisory_lock($1)", RECONCILE_LOCK):
            return None
        try:
            report = await ledger.reconcile(connection)
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", RECONCILE_LOCK)
    metrics.RECONCILE_PROBLEMS.set(len(report.problems))
    metrics.RECONCILE_CHECKED.set(clock.now_s())
    if not report.ok:
        log.error("ledger reconciliation: %s", report.text())
    return report


async def run(pool: asyncpg.Pool, clock: Clock, interval_s: float, reconcile_interval_s: float) -> None:
    """Count the holds every interval_s; reconcile every reconcile_interval_s (0 = never)."""
    reconciled_s: float | None = None  # monotonic
    while True:
        try:
            await count_holds(pool, clock)
            now_s = time.monotonic()
            if reconcile_interval_s and (reconciled_s is None or now_s - reconciled_s >= reconcile_interval_s):
                reconciled_s = now_s
                await reconcile(pool, clock)
        except POSTGRES_FAILURES as error:
            log.warning("ledger watch failed: %s", type(error).__name__)
        await asyncio.sleep(interval_s)
