"""Group commit: the moves and resolutions of concurrent callers, sent to PostgreSQL together.

A caller's `move` or `resolve` is queued and answered by its own Transfer or exception, exactly as
ledger.move / ledger.resolve answer it. The queue goes as ONE call of ledger_batch (migrations 0015-0016,
decision 0021): one round trip, one transaction, one write of each account however many items
touch it. One batch is in flight per Batcher (per worker); what arrives meanwhile waits for it and
goes next, so a busy worker sends big batches and an idle one adds one turn of the event loop (or
`window_s`, when set) to a call. Each item is checked on its own in the function; a refusal is
that item's answer and nothing else's. A batch that fails as a whole with an error of PostgreSQL's
that is not an outage is sent again one item at a time, so the error stays with the item that
caused it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from ledger.transfers import ItemFailed, LedgerError, Transfer, _outcome, move_item, resolve_item

BATCH = """
SELECT b.item_index, b.status, b.detail, (b.transfer).*
FROM ledger_batch($1::jsonb) AS b"""
# SQLSTATE classes that mean PostgreSQL could not do the work at all (connection, resources,
# operator intervention, system errors): every item fails with the batch, none is tried alone.
OUTAGE_CLASSES = ("08", "53", "57", "58")


@dataclass(slots=True, eq=False)
class Pending:
    item: dict[str, Any]
    future: asyncio.Future


def _json_default(value: Any) -> str:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot send {type(value).__name__} to the ledger")


class Batcher:
    """The ledger's writes of one worker, gathered: `await batcher.move(...)` / `resolve(...)`."""

    def __init__(self, pool: asyncpg.Pool, *, window_s: float = 0.0, items_max: int = 256) -> None:
        self.pool = pool
        self.window_s = window_s    # how long the first item of an idle batcher waits for company
        self.items_max = items_max  # items per call at most; the rest go in the next call
        self.queue: list[Pending] = []
        self.sender: asyncio.Task | None = None
        self.batches = 0  # calls of ledger_batch sent, and the items they carried (bench, metrics)
        self.items = 0

    async def move(self, *, key: str, debit: int, credit: int, amount_micro: int, kind: str, now: dt.datetime,
                   user_id: int | None = None, description: str = "", metadata: dict[str, Any] | None = None,
                   hold_until: dt.datetime | None = None, budgeted: bool = False,
                   api_key_id: int | None = None) -> Transfer:
        """ledger.move, batched. `budgeted`: a hold checked and charged against the budgets of
        `user_id` and `api_key_id`, as ledger_move_within_budgets does (LimitExceeded)."""
        item = move_item(key=key, debit=debit, credit=credit, amount_micro=amount_micro, kind=kind, now=now,
                         user_id=user_id, description=description, metadata=metadata, hold_until=hold_until)
        item["budgeted"], item["api_key_id"] = budgeted, api_key_id
        return await self._submit(item)

    async def resolve(self, *, key: str, hold_id: int, now: dt.datetime, post_micro: int | None = None,
                      expiring: bool = False, metadata: dict[str, Any] | None = None,
                      usage: dict[str, Any] | None = None) -> Transfer:
        """ledger.resolve, batched. `usage`: an ai_usage row (column -> value) written in the same
        transaction when this resolution is the one that resolved the hold."""
        item = resolve_item(key=key, hold_id=hold_id, now=now, post_micro=post_micro, expiring=expiring,
                            metadata=metadata)
        if usage is not None:
            item["usage"] = usage
        return await self._submit(item)

    async def close(self) -> None:
        """Send what is queued and wait for it (before the pool closes)."""
        while self.sender is not None and not self.sender.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self.sender)

    def _submit(self, item: dict[str, Any]) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.queue.append(Pending(item, future))
        if self.sender is None or self.sender.done():
            self.sender = asyncio.create_task(self._send_queue(), name="ledger-batches")
        return future

    async def _send_queue(self) -> None:
        await asyncio.sleep(self.window_s)  # 0: the items queued in this turn of the event loop
        while self.queue:
            batch, self.queue = self.queue[:self.items_max], self.queue[self.items_max:]
            await self._send(batch)

    async def _send(self, batch: list[Pending]) -> None:
        try:
            rows = await self._call([pending.item for pending in batch])
        except asyncpg.PostgresError as error:
            outage = (error.sqlstate or "")[:2] in OUTAGE_CLASSES
            if len(batch) > 1 and not outage:
                for pending in batch:  # the error stays with the item that caused it
                    await self._send([pending])
                return
            self._fail(batch, error if outage else ItemFailed(
                f"the ledger could not write this transfer: {error.sqlstate}: {error}"))
            return
        except BaseException as error:
            self._fail(batch, error)
            if not isinstance(error, Exception):
                raise
            return
        for row in rows:
            self._answer(batch[row["item_index"]], row)
        queued = {id(pending) for pending in self.queue}
        unanswered = [pending for pending in batch if id(pending) not in queued]  # none, unless a bug
        self._fail(unanswered, LedgerError("the ledger batch returned no answer for this transfer"))

    async def _call(self, items: list[dict[str, Any]]) -> list[asyncpg.Record]:
        payload = orjson.dumps(items, default=_json_default, option=orjson.OPT_NAIVE_UTC).decode()
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(BATCH, payload)
        self.batches += 1
        self.items += len(items)
        return rows

    def _answer(self, pending: Pending, row: asyncpg.Record) -> None:
        if row["status"] == "retry":  # its hold's accounts were not locked by this batch: next one
            self.queue.append(pending)
            return
        if pending.future.done():  # the caller was cancelled; the item's outcome stands
            return
        item = pending.item
        try:
            pending.future.set_result(_outcome(row, key=item["key"], hold_id=item.get("hold_id")))
        except Exception as error:
            pending.future.set_exception(error)

    @staticmethod
    def _fail(batch: list[Pending], error: BaseException) -> None:
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(error)
