"""Usage rows, one per AI call; token and credit counters.

A call that held credits writes its row in the transaction that settles the hold (ledger_batch, decision 0021),
so every posted or voided charge has its row whatever happens to the process after (L6). The few
calls without a hold (refused before it, free routes) are written off the hot path in batches.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import asyncpg

import ledger
from gateway.core import metrics
from gateway.core.failures import POSTGRES_FAILURES

log = logging.getLogger(__name__)

COLUMNS = ("request_id", "api_key_id", "user_id", "provider", "model", "input_tokens", "cached_input_tokens",
           "output_tokens", "cost_micro", "charged_micro", "hold_transfer_id", "outcome", "stream",
           "usage_source", "latency_ms", "upstream_ms", "created_at")
COLUMN_TYPES = ("text", "bigint", "bigint", "text", "text", "bigint", "bigint", "bigint", "bigint", "bigint",
                "bigint", "text", "boolean", "text", "integer", "integer", "timestamptz")
# The ledger's resolution (its eight parameters first) and the usage row, in one statement: one
# round trip, one transaction. The row is written only when this statement resolved the hold.
RESOLVE_WITH_ROW = f"""
WITH resolution AS MATERIALIZED (
    SELECT * FROM ledger_resolve($1, $2, $3, $4, $5, $6, $7, $8)),
usage_row AS (
    INSERT INTO ai_usage ({", ".join(COLUMNS)})
    SELECT {", ".join(f"${number}::{kind}" for number, kind in enumerate(COLUMN_TYPES, start=9))}
    FROM resolution WHERE resolution.status = 'ok')
SELECT resolution.status, resolution.detail, (resolution.transfer).* FROM resolution"""


@dataclass(frozen=True, slots=True)
class UsageRow:
    request_id: str
    api_key_id: int | None
    user_id: int
    provider: str
    model: str
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    cost_micro: int
    charged_micro: int
    hold_transfer_id: int | None
    outcome: str
    stream: bool
    usage_source: str
    latency_ms: int
    upstream_ms: int
    created_at: dt.datetime


# The row's values in COLUMNS order: one C call, where dataclasses.astuple deep-copies field by field.
row_values: Callable[[UsageRow], tuple] = operator.attrgetter(*COLUMNS)


class UsageLog:
    def __init__(self, pool: asyncpg.Pool, known_models: Callable[[], Mapping], pending_max: int) -> None:
        self.pool = pool
        self.pending_max = pending_max  # rows kept for the next batch at most; beyond, dropped and logged
        self.pending: list[UsageRow] = []
        self.known_models = known_models  # a model outside the price table is labelled "other"

    def add(self, row: UsageRow) -> None:
        """Count the row and queue it for the next batch."""
        self.observe(row)
        if len(self.pending) >= self.pending_max:
            log.error("usage log full: dropping a row (request %s); the transfer itself is recorded",
                      row.request_id)
            return
        self.pending.append(row)

    def observe(self, row: UsageRow) -> None:
        """Count the row in the token, credit and call metrics (it is written elsewhere or queued)."""
        model = row.model if row.model in self.known_models() else "other"
        for kind, count in (("input", row.input_tokens), ("cached_input", row.cached_input_tokens),
                            ("output", row.output_tokens)):
            if count:
                metrics.labelled(metrics.AI_TOKENS, row.provider, model, kind).inc(count)
        if row.charged_micro:
            metrics.labelled(metrics.AI_CREDITS, row.provider, model).inc(row.charged_micro)
        metrics.labelled(metrics.AI_CALLS, row.provider, row.outcome, row.usage_source).inc()

    async def flush(self) -> int:
        if not self.pending:
            return 0
        batch, self.pending = self.pending, []
        try:
            await self.pool.copy_records_to_table("ai_usage", records=[row_values(r) for r in batch],
                                                  columns=COLUMNS)
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as error:
            log.error("usage batch refused by PostgreSQL, dropped (%d rows): %s", len(batch), error)
        except BaseException:
            self.pending = batch + self.pending  # kept for the next try
            raise
        return len(batch)

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.flush()
            except POSTGRES_FAILURES as error:
                log.warning("usage flush failed, retrying: %s", type(error).__name__)


def columns(row: UsageRow) -> dict:
    """The row as ledger_batch writes it with the resolution of its hold (migration 0015)."""
    return dict(zip(COLUMNS, row_values(row)))


async def resolve_with_row(connection: asyncpg.Connection, *, key: str, hold_id: int, now: dt.datetime,
                           post_micro: int | None, metadata: dict, row: UsageRow) -> ledger.Transfer:
    """Post (or void, `post_micro` None) the call's hold and insert its usage row atomically, in a
    statement of its own: the direct path the batches replaced (bench.ledger measures it as 'before')."""
    assert row.hold_transfer_id == hold_id
    return await ledger.resolve(connection, key=key, hold_id=hold_id, now=now, post_micro=post_micro,
                                expiring=True, metadata=metadata, statement=RESOLVE_WITH_ROW,
                                extra=row_values(row))
