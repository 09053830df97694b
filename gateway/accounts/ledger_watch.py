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

# The open holds, read through the partial index on expiry within a bounded range: unexpired ones
# (placed within TOLLGATE_AI_HOLD_TTL_S) and those expired within the last HOLD_BACKLOG_LOOKBACK_S.
# Every hold ever placed stays a 'pending' row (its resolution is another row), so an unbounded
# range would read the ledger's whole history on every check.
OPEN_HOLDS = """
SELECT count(*) FILTER (WHERE p.expires_at > $1) AS open,
       count(*) FILTER (WHERE p.expires_at <= $1) AS expired,
       COALESCE(sum(p.amount_micro), 0)::bigint AS held_micro
FROM transfers p
WHERE p.phase = 'pending' AND p.expires_at > $1 - make_interval(secs => $2)
  AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = p.id)"""
# An expired hold still open is counted in the backlog for this long (the alert fires well within it).
HOLD_BACKLOG_LOOKBACK_S = 3600.0
# One reconciliation at a time across every worker and gateway: the others skip their turn.
RECONCILE_LOCK = 0x7011_6A7E_0025


async def count_holds(pool: asyncpg.Pool, clock: Clock) -> None:
    """Set the open-hold gauges from one read."""
    now = dt.datetime.fromtimestamp(clock.now_s(), dt.timezone.utc)
    row = await pool.fetchrow(OPEN_HOLDS, now, HOLD_BACKLOG_LOOKBACK_S)
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
