"""Auto-pipelining of Redis script calls: the calls concurrent requests make in one event-loop tick
go to Redis as one write, and their replies come back in one read (decision 0022).

As ioredis' `enableAutoPipelining`: a call is queued, and the first free lane (a connection of its
own with a task that owns it; one by default) takes everything queued, writes it with one `writelines`, reads the
replies in order and hands each to its caller. Calls made while a lane waits for Redis queue up
for the next free lane, so the batches grow with the load and a lone call goes out at once.
Commands are packed and replies parsed by redis-py (hiredis when installed); nothing here speaks
RESP itself.

- An error reply (a script error, NOSCRIPT, OOM) fails only its own call; the replies after it are
  read as usual. `evalsha` reloads a script the server lost by sending it once with EVAL.
- A connection failure or a timeout (one bound for the whole batch) fails the batch and every call
  queued behind it with the same redis-py exception, and the lane's connection is dropped: the
  next call reconnects. Callers see exactly the failures a pooled redis-py call raises.
- One pipeline talks to one server. Under Redis Cluster a router would hold one per node and pick
  it by the keys' slot; the callers' interface (`evalsha(script, keys, args)`) stays.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as redis_asyncio
import redis.exceptions
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript

# One lane: what queues while it waits for Redis's replies goes out as the next batch, so batches grow
# with the load (more lanes send sooner but smaller batches: more writes, more CPU per call).
LANES_DEFAULT = 1
# Replies read per batch at most: a bounded write and a bounded wait for the calls behind it.
BATCH_MAX = 512

Queued = tuple[tuple[Any, ...], "asyncio.Future[Any]"]


def pipeline_connections(client: redis_asyncio.Redis) -> Callable[[], AbstractConnection]:
    """New connections like the client's pool makes (address, credentials, database, decoding), but
    without a socket timeout: a batch has one deadline of its own, where redis-py would start a
    timer task for every write and every reply."""
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "socket_timeout": None}
    kwargs.setdefault("socket_connect_timeout", pool.connection_kwargs.get("socket_timeout"))
    return lambda: pool.connection_class(**kwargs)


class ScriptPipeline:
    """Sends the Redis commands of concurrent callers in batches, each caller getting its own reply."""

    def __init__(self, connect: Callable[[], AbstractConnection], *, timeout_s: float,
                 lanes: int = LANES_DEFAULT) -> None:
        self.connect = connect  # makes a new, unconnected redis-py connection
        self.timeout_s = timeout_s
        self.lane_count = lanes
        self.queued: list[Queued] = []
        self.work = asyncio.Event()
        self.lanes: list[asyncio.Task[None]] = []
        self.connections: list[AbstractConnection] = []
        self.closed = False

    async def execute(self, *command: Any) -> Any:
        """One command's raw reply (no redis-py response callbacks), sent with whatever else was queued
        in the same tick."""
        if self.closed:
            raise redis.exceptions.ConnectionError("the Redis pipeline is closed")
        if not self.lanes:
            self._start_lanes()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.queued.append((command, future))
        self.work.set()
        return await future

    async def evalsha(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """EVALSHA of a registered script; once more with EVAL (which caches it) if Redis lost it."""
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return await self.execute("EVAL", script.script, len(keys), *keys, *args)

    async def close(self) -> None:
        self.closed = True
        for lane in self.lanes:
            lane.cancel()
        for lane in self.lanes:
            try:
                await lane
            except asyncio.CancelledError:
                pass
        self._fail(self.queued, redis.exceptions.ConnectionError("the Redis pipeline is closed"))
        self.queued = []
        for connection in self.connections:
            await connection.disconnect(nowait=True)

    # -- internals -------------------------------------------------------------------------

    def _start_lanes(self) -> None:
        for number in range(self.lane_count):
            connection = self.connect()
            self.connections.append(connection)
            self.lanes.append(asyncio.create_task(self._lane(connection), name=f"redis-pipeline-{number}"))

    async def _lane(self, connection: AbstractConnection) -> None:
        while True:
            if not self.queued:
                self.work.clear()
                await self.work.wait()
                continue
            batch, self.queued = self.queued[:BATCH_MAX], self.queued[BATCH_MAX:]
            try:
                await self._send_and_read(connection, batch)
            except asyncio.CancelledError:
                # Closing: the batch's callers hear it rather than wait for replies nobody reads.
                self._fail(batch, redis.exceptions.ConnectionError("the Redis pipeline is closed"))
                raise
            except Exception as failure:  # noqa: BLE001 - a lane never dies: its callers must hear
                await connection.disconnect(nowait=True)
                # Redis is unreachable or stuck: the calls queued behind would only wait as long again.
                behind, self.queued = self.queued, []
                self._fail(batch + behind, failure)

    async def _send_and_read(self, connection: AbstractConnection, batch: list[Queued]) -> None:
        """Write the batch at once, then hand each reply (or error reply) to its caller in order."""
        packed: list[bytes] = []
        waiting: list[asyncio.Future[Any]] = []
        for command, future in batch:
            try:
                packed.extend(connection.pack_command(*command))
            except redis.exceptions.DataError as error:  # an argument redis-py cannot encode: that call only
                _settle(future, error=error)
            else:
                waiting.append(future)
        if not waiting:
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                if not connection.is_connected:
                    await connection.connect()
                # check_health=False: a batch is one round trip; redis-py's PING first would be another.
                await connection.send_packed_command([b"".join(packed)], check_health=False)
                for future in waiting:
                    try:
                        reply = await connection.read_response()
                    except redis.exceptions.ResponseError as error:
                        _settle(future, error=error)
                    else:
                        _settle(future, reply=reply)
        except TimeoutError:
            raise redis.exceptions.TimeoutError(f"Redis did not answer within {self.timeout_s} s") from None
        except OSError as error:
            raise redis.exceptions.ConnectionError(f"Redis connection failed: {error}") from error

    @staticmethod
    def _fail(calls: list[Queued], failure: Exception) -> None:
        for _command, future in calls:
            # One exception object each: a raised exception carries its own traceback.
            _settle(future, error=_copy(failure))


def _settle(future: asyncio.Future[Any], *, reply: Any = None, error: BaseException | None = None) -> None:
    if future.done():  # the caller was cancelled (its client left): nobody is waiting for this reply
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(reply)


def _copy(failure: Exception) -> Exception:
    try:
        copied = type(failure)(*failure.args)
    except Exception:  # noqa: BLE001 - an exception type with a constructor of its own
        return failure
    copied.__cause__ = failure.__cause__
    return copied
