"""Proxy sessions: per (token, device) counters kept in memory and flushed to PostgreSQL in batches."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass

import asyncpg

from gateway.core import metrics
from gateway.core.clock import Clock
from gateway.core.failures import POSTGRES_FAILURES

log = logging.getLogger(__name__)

# Additive upsert: every worker flushes its own deltas into the one open session row.
UPSERT = """
INSERT INTO proxy_sessions AS s
    (token_id, device_id, ip, user_agent, requests, bytes_in, bytes_out, started_at, last_seen_at)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[],
                     $7::bigint[], $8::timestamptz[], $9::timestamptz[])
ON CONFLICT (token_id, device_id) WHERE ended_at IS NULL DO UPDATE SET
    ip = excluded.ip,
    user_agent = excluded.user_agent,
    requests = s.requests + excluded.requests,
    bytes_in = s.bytes_in + excluded.bytes_in,
    bytes_out = s.bytes_out + excluded.bytes_out,
    last_seen_at = greatest(s.last_seen_at, excluded.last_seen_at)"""

END_IDLE = """
UPDATE proxy_sessions SET ended_at = last_seen_at + make_interval(secs => $2)
WHERE ended_at IS NULL AND last_seen_at < $1::timestamptz - make_interval(secs => $2)"""

IP_MAX = 64
USER_AGENT_MAX = 512


def clean_text(value: str, length_max: int) -> str:
    """Text PostgreSQL accepts: valid UTF-8 (header bytes may not be), no NUL, bounded."""
    return value[:length_max].encode("utf-8", "replace").decode("utf-8").replace("\x00", "")


@dataclass(slots=True)
class Pending:
    ip: str
    user_agent: str
    requests: int
    bytes_in: int
    bytes_out: int
    started_s: float
    last_seen_s: float


def _timestamp(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


class SessionRecorder:
    """Counts requests and bytes per (token, device) with no I/O; `flush` writes them out."""

    def __init__(self, pool: asyncpg.Pool, clock: Clock, *, idle_s: int, pending_max: int) -> None:
        self.pool = pool
        self.clock = clock
        self.idle_s = idle_s
        self.pending_max = pending_max
        self.pending: dict[tuple[int, str], Pending] = {}
        self.full = asyncio.Event()

    def record(self, token_id: int, device_id: str, ip: str, user_agent: str,
               bytes_in: int, bytes_out: int) -> None:
        now_s = self.clock.now_s()
        key = (token_id, device_id)
        entry = self.pending.get(key)
        # Kept as sent and cleaned at flush (once per session and batch, not once per request).
        if entry is None:
            if len(self.pending) >= self.pending_max * 2:
                # PostgreSQL has been unreachable for a while: shed, never grow without bound.
                metrics.SESSION_UPDATES_DROPPED.inc()
                return
            self.pending[key] = Pending(ip, user_agent, 1, bytes_in, bytes_out, now_s, now_s)
            if len(self.pending) >= self.pending_max:
                self.full.set()
            return
        entry.ip, entry.user_agent = ip, user_agent
        entry.requests += 1
        entry.bytes_in += bytes_in
        entry.bytes_out += bytes_out
        entry.last_seen_s = now_s

    async def flush(self) -> int:
        """Write the pending counters in one statement; on failure they are kept for the next try."""
        if not self.pending:
            return 0
        batch, self.pending = self.pending, {}
        self.full.clear()
        columns: list[list] = [[] for _ in range(9)]
        for (token_id, device_id), entry in batch.items():
            row = (token_id, device_id, clean_text(entry.ip, IP_MAX), clean_text(entry.user_agent, USER_AGENT_MAX),
                   entry.requests, entry.bytes_in,
                   entry.bytes_out, _timestamp(entry.started_s), _timestamp(entry.last_seen_s))
            for column, value in zip(columns, row):
                column.append(value)
        try:
            await self.pool.execute(UPSERT, *columns)
        except asyncpg.DataError:
            # A batch PostgreSQL refuses would be refused forever: drop it rather than retry.
            log.exception("session batch of %d refused; dropped", len(batch))
            metrics.SESSION_UPDATES_DROPPED.inc(len(batch))
            return 0
        except POSTGRES_FAILURES:
            log.warning("session flush failed; %d sessions kept for retry", len(batch))
            self._merge_back(batch)
            raise
        metrics.SESSIONS_FLUSHED.inc(len(batch))
        return len(batch)

    def _merge_back(self, batch: dict[tuple[int, str], Pending]) -> None:
        for key, old in batch.items():
            new = self.pending.get(key)
            if new is None:
                self.pending[key] = old
                continue
            new.requests += old.requests
            new.bytes_in += old.bytes_in
            new.bytes_out += old.bytes_out
            new.started_s = min(new.started_s, old.started_s)

    async def end_idle(self) -> int:
        status = await self.pool.execute(END_IDLE, _timestamp(self.clock.now_s()), float(self.idle_s))
        ended = int(status.split()[-1])
        metrics.SESSIONS_ENDED.inc(ended)
        return ended

    async def run(self, interval_s: float) -> None:
        """Background loop owned by the app's cleanup context: flush, end idle sessions, repeat."""
        while True:
            try:
                await asyncio.wait_for(self.full.wait(), timeout=interval_s)
            except asyncio.TimeoutError:
                pass
            try:
                await self.flush()
                await self.end_idle()
            except POSTGRES_FAILURES:
                await asyncio.sleep(interval_s)
