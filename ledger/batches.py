"""Group commit: the moves and resolutions of concurrent callers, sent to PostgreSQL together.

A caller's `move` or `resolve` is queued and answered by its own Transfer or exception, exactly as
ledger.move / ledger.resolve answer it. The queue goes as ONE call of ledger_batch (migrations
0015-0017, decision 0021): one round trip, one transaction, one write of each account however many items
touch it. One batch is in flight per lane of a Batcher (per worker); what arrives meanwhile waits for it
and goes next, so a busy worker sends big batches and an idle one adds one turn of the event loop (or
`window_s`, when set) to a call. A lane takes the items of its users (user id modulo the lanes): with
the AI holds crediting their user's revenue shard (ledger.accounts.revenue_shard), the batches of two
lanes lock no row in common and run side by side on two connections. Each item is checked on its own in
the function; a refusal is that item's answer and nothing else's. A batch that fails as a whole with an
error of PostgreSQL's that is not an outage is sent again one item at a time, so the error stays with
the item that caused it; an item that fails alone with an error a retry may cure (a deadlock, a
serialization failure) raises PostgreSQL's own error, as ledger.move would, so callers that retry on it
do.
"""

from __future__ import annotations

import asyncio
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
# operator intervention, system errors), and a read-only transaction (25006: a standby after a
# failover): every item fails with the batch and PostgreSQL's own error, none is tried alone.
OUTAGE_CLASSES = ("08", "53", "57", "58")
OUTAGE_STATES = ("25006",)
# Class 40 (serialization failure, deadlock): the transaction was rolled back whole and a retry may
# pass. A batch that hits one is sent again item by item; an item that hits one alone raises it
# unwrapped, as ledger.move would (gateway.core.failures.STORE_FAILURES: the settlement retries it).
ROLLBACK_CLASS = "40"
# 23505: a key another transaction committed while the batch waited on it. Sent again alone, the
# item finds that transfer and answers replayed or conflict; once, in case it is some other key.
UNIQUE_VIOLATION = "23505"
# 'retry' (a hold committed after the batch locked its accounts) goes in the next batch; an item
# answered 'retry' this many times fails (ItemFailed) rather than loop.
RETRIES_MAX = 3


@dataclass(slots=True, eq=False)
class Pending:
    item: dict[str, Any]
    future: asyncio.Future
    body: bytes = b""      # the item as JSON, encoded when it was queued
    lane: int = 0          # the lane it goes in, again if it is answered 'retry'
    retries: int = 0       # times it was answered 'retry'
    resent: bool = False   # sent again alone after a unique violation


def _json_default(value: Any) -> str:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot send {type(value).__name__} to the ledger")


def encode(items: list[dict[str, Any]]) -> str:
    """Items as ledger_batch takes them: a JSON array (hashes in hex, naive datetimes as UTC)."""
    return orjson.dumps(items, default=_json_default, option=orjson.OPT_NAIVE_UTC).decode()


def _session_untouched(connection: Any) -> None:
    """Tells a pool that can skip its reset on release (gateway.core.database_pool) that this use
    changed nothing in the session: one ledger_batch call, whose settings are its transaction's own."""
    untouched = getattr(connection, "session_untouched", None)
    if untouched is not None:
        untouched()


class Batcher:
    """The ledger's writes of one worker, gathered: `await batcher.move(...)` / `resolve(...)`."""

    def __init__(self, pool: asyncpg.Pool, *, window_s: float = 0.0, items_max: int = 256, lanes: int = 1) -> None:
        if lanes < 1:
            raise ValueError("a Batcher needs at least one lane")
        self.pool = pool
        self.window_s = window_s    # how long the first item of an idle lane waits for company
        self.items_max = items_max  # items per call at most; the rest go in the next call
        # Per lane: what waits to be sent, and the task sending it (one batch in flight per lane).
        self.queues: list[list[Pending]] = [[] for _ in range(lanes)]
        self.senders: list[asyncio.Task | None] = [None] * lanes
        self.statement = BATCH  # the call; a test may point it at a function of its own
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
        return await self._submit(item, user_id)

    async def resolve(self, *, key: str, hold_id: int, now: dt.datetime, post_micro: int | None = None,
                      expiring: bool = False, metadata: dict[str, Any] | None = None,
                      usage: dict[str, Any] | None = None, user_id: int | None = None) -> Transfer:
        """ledger.resolve, batched. `usage`: an ai_usage row (column -> value) written in the same
        transaction when this resolution is the one that resolved the hold. `user_id`: the hold's
        user, whose lane the resolution goes in (the lane that locks the hold's accounts)."""
        item = resolve_item(key=key, hold_id=hold_id, now=now, post_micro=post_micro, expiring=expiring,
                            metadata=metadata)
        if usage is not None:
            item["usage"] = usage
        return await self._submit(item, user_id)

    async def close(self) -> None:
        """Send what is queued on every lane and wait for it (before the pool closes), a lane started
        meanwhile (a settlement retrying) too. A sender that fails or was cancelled is not waited
        for again; its callers have their answers (`_send_queue`)."""
        while busy := [sender for sender in self.senders if sender is not None and not sender.done()]:
            await asyncio.wait(busy)  # never raises their errors, never cancels them

    def _submit(self, item: dict[str, Any], user_id: int | None) -> asyncio.Future:
        # Encoded here: an item that cannot be sent fails its own caller, not the batch it would join.
        body = orjson.dumps(item, default=_json_default, option=orjson.OPT_NAIVE_UTC)
        future = asyncio.get_running_loop().create_future()
        lane = user_id % len(self.queues) if user_id is not None else 0
        self.queues[lane].append(Pending(item, future, body, lane))
        sender = self.senders[lane]
        if sender is None or sender.done():
            self.senders[lane] = asyncio.create_task(self._send_queue(lane), name=f"ledger-batches-{lane}")
        return future

    async def _send_queue(self, lane: int) -> None:
        await asyncio.sleep(self.window_s)  # 0: the items queued in this turn of the event loop
        queues = self.queues
        while queues[lane]:
            batch, queues[lane] = queues[lane][:self.items_max], queues[lane][self.items_max:]
            try:
                await self._send(batch)
            except BaseException as error:  # cancelled (mid-fallback too): no caller waits for ever
                queued, queues[lane] = queues[lane], []
                self._fail([*batch, *queued], error)
                raise

    async def _send(self, batch: list[Pending]) -> None:
        try:
            rows = await self._call(batch)
        except asyncpg.PostgresError as error:
            await self._failed(batch, error)
            return
        except BaseException as error:
            self._fail(batch, error)
            if not isinstance(error, Exception):
                raise
            return
        for row in rows:
            self._answer(batch[row["item_index"]], row)
        queued = {id(pending) for pending in self.queues[batch[0].lane]}
        unanswered = [pending for pending in batch if id(pending) not in queued]  # none, unless a bug
        self._fail(unanswered, LedgerError("the ledger batch returned no answer for this transfer"))

    async def _failed(self, batch: list[Pending], error: asyncpg.PostgresError) -> None:
        """A batch whose one statement failed, nothing written: its items alone, or its error."""
        sqlstate = error.sqlstate or ""
        if sqlstate[:2] in OUTAGE_CLASSES or sqlstate in OUTAGE_STATES:
            self._fail(batch, error)
        elif len(batch) > 1:
            for pending in batch:  # the error stays with the item that caused it
                await self._send([pending])
        elif sqlstate == UNIQUE_VIOLATION and not batch[0].resent:
            batch[0].resent = True  # its key committed meanwhile: alone again, it finds that transfer
            await self._send(batch)
        elif sqlstate[:2] == ROLLBACK_CLASS:
            self._fail(batch, error)  # rolled back whole, nothing written: the caller's to retry
        else:
            self._fail(batch, ItemFailed(f"the ledger could not write this transfer: {sqlstate}: {error}"))

    async def _call(self, batch: list[Pending]) -> list[asyncpg.Record]:
        payload = (b"[" + b",".join(pending.body for pending in batch) + b"]").decode()
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(self.statement, payload)
            if self.statement is BATCH:  # not a statement a test pointed elsewhere
                _session_untouched(connection)
        self.batches += 1
        self.items += len(batch)
        return rows

    def _answer(self, pending: Pending, row: asyncpg.Record) -> None:
        if row["status"] == "retry":  # its hold's accounts were not locked by this batch: next one
            pending.retries += 1
            if pending.retries <= RETRIES_MAX:
                self.queues[pending.lane].append(pending)
            else:  # nothing written; a later call may pass
                self._fail([pending], ItemFailed(f"the ledger could not lock the accounts of hold "
                                                 f"{pending.item.get('hold_id')} in {RETRIES_MAX + 1} batches"))
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
