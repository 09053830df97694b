"""Auto-pipelining of Redis script calls: the calls concurrent requests make in one event-loop tick
go to Redis as one write, and their replies come back in one read (decision 0022).

As ioredis' `enableAutoPipelining`: a call is queued, and the first free lane (a connection of its
own; one by default) takes everything queued, writes it at once and hands each reply to its caller
as it is parsed. Calls made while a lane waits for Redis queue up and go out together as soon as its
batch is answered, so the batches grow with the load and a lone call goes out on the next loop
iteration.

The lane is an asyncio protocol on the connection: replies are parsed by hiredis (the parser
redis-py itself uses) straight from `data_received`, with no reader task, stream or redis-py
command machinery per call. Commands are packed here (RESP arrays of bulk strings, the arguments
encoded as redis-py encodes them). redis-py opens each connection and runs its handshake (address,
TLS, credentials, database, client name), then hands the transport over.

- An error reply (a script error, NOSCRIPT, OOM) fails only its own call; the replies after it are
  read as usual. An argument redis-py could not encode fails only its call, before anything is
  queued. `evalsha` reloads a script the server lost by sending it once with EVAL.
- A connection failure, a lost connection or a timeout (one bound per batch, connect included) fails
  the batch and every call queued behind it with the redis-py exception a pooled call would raise
  (`ConnectionError`, `TimeoutError`), and the lane's connection is dropped: the next call
  reconnects. A connection Redis closes while idle (a restart) is noticed at once and replaced on
  the next call, without failing one.
- One pipeline talks to one server. Under Redis Cluster a router would hold one per node and pick
  it by the keys' slot; the callers' interface (`evalsha(script, keys, args)`) stays.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
import redis.asyncio as redis_asyncio
import redis.exceptions
from redis._parsers.base import BaseParser
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript

# One lane: what queues while it waits for Redis's replies goes out as the next batch, so batches grow
# with the load (more lanes send sooner but smaller batches: more writes, more CPU per call).
LANES_DEFAULT = 1
# Commands written per batch at most: a bounded write and a bounded wait for the calls behind it.
BATCH_MAX = 512

Queued = tuple[bytes, "asyncio.Future[Any]"]


def pipeline_connections(client: redis_asyncio.Redis) -> Callable[[], AbstractConnection]:
    """New connections like the client's pool makes (address, TLS, credentials, database, decoding),
    without a socket timeout (a batch has one deadline of its own) and speaking RESP2 (no push
    messages between the replies)."""
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "socket_timeout": None, "protocol": 2}
    kwargs.setdefault("socket_connect_timeout", pool.connection_kwargs.get("socket_timeout"))
    return lambda: pool.connection_class(**kwargs)


def pack(*command: Any) -> bytes:
    """One command as a RESP array of bulk strings; arguments encoded as redis-py's `Encoder` does
    (utf-8 text, numbers by their repr, bytes as they are; None, booleans and others refused)."""
    parts = [b"*%d\r\n" % len(command)]
    for argument in command:
        if isinstance(argument, str):
            encoded = argument.encode()
        elif isinstance(argument, bytes):
            encoded = argument
        elif isinstance(argument, (int, float)) and not isinstance(argument, bool):
            encoded = repr(argument).encode()
        elif isinstance(argument, memoryview):
            encoded = argument.tobytes()
        else:
            raise redis.exceptions.DataError(
                f"Invalid input of type: '{type(argument).__name__}'. Convert to a bytes, string, int or float first.")
        parts.append(b"$%d\r\n%b\r\n" % (len(encoded), encoded))
    return b"".join(parts)


class ScriptPipeline:
    """Sends the Redis commands of concurrent callers in batches, each caller getting its own reply."""

    def __init__(self, connect: Callable[[], AbstractConnection], *, timeout_s: float,
                 lanes: int = LANES_DEFAULT) -> None:
        self.connect = connect  # makes a new, unconnected redis-py connection
        self.timeout_s = timeout_s
        self.queued: deque[Queued] = deque()
        self.lanes = [Lane(self) for _ in range(lanes)]
        self.flush_scheduled = False
        self.closed = False

    async def execute(self, *command: Any) -> Any:
        """One command's raw reply (no redis-py response callbacks), sent with whatever else was queued
        in the same tick."""
        return await self.send(pack(*command))

    async def evalsha(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """EVALSHA of a registered script; once more with EVAL (which caches it) if Redis lost it."""
        try:
            return await self.send(pack("EVALSHA", script.sha, len(keys), *keys, *args))
        except redis.exceptions.NoScriptError:
            return await self.send(pack("EVAL", script.script, len(keys), *keys, *args))

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        """Queue one packed command; its reply (or error) arrives in the returned future."""
        if self.closed:
            raise redis.exceptions.ConnectionError("the Redis pipeline is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.queued.append((packed, future))
        if not self.flush_scheduled:
            # On the next iteration: every call made in this tick joins the same write.
            self.flush_scheduled = True
            loop.call_soon(self.flush)
        return future

    def flush(self) -> None:
        """Hand what is queued to the free lanes; connect a lane that has no connection."""
        self.flush_scheduled = False
        if self.closed:
            return
        for lane in self.lanes:
            if not self.queued:
                return
            if lane.transport is None:
                lane.start_connecting()
            elif not lane.waiting:
                lane.write_batch()

    def fail_queued(self, failure: Exception) -> None:
        """Redis is unreachable or stuck: the calls queued behind would only wait as long again."""
        queued, self.queued = self.queued, deque()
        for _packed, future in queued:
            _settle(future, error=_copy(failure))

    async def close(self) -> None:
        self.closed = True
        failure = redis.exceptions.ConnectionError("the Redis pipeline is closed")
        for lane in self.lanes:
            await lane.stop(failure)
        self.fail_queued(failure)


class Lane(asyncio.Protocol):
    """One connection to Redis: writes a batch, matches each parsed reply to the next waiting call."""

    def __init__(self, pipeline: ScriptPipeline) -> None:
        self.pipeline = pipeline
        self.transport: asyncio.WriteTransport | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.reader: hiredis.Reader | None = None
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.deadline: asyncio.TimerHandle | None = None
        self.stream_writer: asyncio.StreamWriter | None = None

    def start_connecting(self) -> None:
        if self.connecting is None:
            self.connecting = asyncio.get_running_loop().create_task(self._connect(), name="redis-pipeline-connect")

    async def _connect(self) -> None:
        try:
            transport, writer = await self._open()
        except Exception as error:  # the queued calls hear every failure to connect
            self.pipeline.fail_queued(_redis_failure(error, self.pipeline.timeout_s))
            return
        finally:  # cancelled too (the pipeline is closing): the next call may connect again
            self.connecting = None
        # Held, not used: asyncio's StreamWriter closes its transport when it is collected.
        self.stream_writer = writer
        self.transport = transport
        if self.pipeline.closed:
            self._drop(redis.exceptions.ConnectionError("the Redis pipeline is closed"))
        else:
            self.pipeline.flush()

    async def _open(self) -> tuple[asyncio.WriteTransport, asyncio.StreamWriter]:
        """A connection through redis-py's handshake (AUTH, HELLO/SELECT, CLIENT SETNAME), its transport
        then taken over by this lane."""
        connection = None
        try:
            connection = self.pipeline.connect()
            async with asyncio.timeout(self.pipeline.timeout_s):
                await connection.connect()
            self.reader = _reader(connection)
            # The handshake's replies are all read: from here the transport is this lane's alone.
            writer = connection._writer
            assert writer is not None
            transport = writer.transport
            transport.set_protocol(self)
        except BaseException:
            if connection is not None:
                with contextlib.suppress(Exception):  # the failure to report is the one above
                    await connection.disconnect(nowait=True)
            raise
        connection._reader = connection._writer = None  # redis-py no longer owns (or closes) it
        return transport, writer

    def write_batch(self) -> None:
        assert self.transport is not None and not self.waiting
        queued, packed = self.pipeline.queued, []
        for _ in range(min(len(queued), BATCH_MAX)):
            command, future = queued.popleft()
            if future.done():  # its caller was cancelled before it was sent
                continue
            packed.append(command)
            self.waiting.append(future)
        if not packed:
            return
        self.deadline = asyncio.get_running_loop().call_later(self.pipeline.timeout_s, self._timed_out)
        self.transport.write(b"".join(packed))

    def data_received(self, data: bytes) -> None:
        assert self.reader is not None
        self.reader.feed(data)
        waiting = self.waiting
        try:
            while waiting and (reply := self.reader.gets()) is not False:
                future = waiting.popleft()
                if future.done():  # the caller was cancelled (its client left)
                    continue
                # An error reply (hiredis makes it redis-py's exception for its code) is its call's alone.
                if isinstance(reply, redis.exceptions.RedisError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except redis.exceptions.InvalidResponse as error:
            self._drop(redis.exceptions.ConnectionError(f"Redis sent an unreadable reply: {error}"))
            return
        if not waiting:
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None
            if self.pipeline.queued:  # what queued meanwhile is the next batch, sent now
                self.write_batch()

    def eof_received(self) -> bool:
        """Redis closed its end (a restart, a CLIENT KILL): let go of the connection now, not an
        iteration later, so no batch is written into it meanwhile."""
        self.connection_lost(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self._drop(redis.exceptions.ConnectionError(f"Redis connection lost: {exc or 'closed by Redis'}"))

    def _timed_out(self) -> None:
        self.deadline = None
        self._drop(redis.exceptions.TimeoutError(f"Redis did not answer within {self.pipeline.timeout_s} s"))

    def _drop(self, failure: Exception) -> None:
        """Fail the batch in flight and the calls behind it; the next call connects anew."""
        transport, self.transport, self.stream_writer = self.transport, None, None
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        if transport is not None:
            transport.abort()
        waiting, self.waiting = self.waiting, deque()
        had_calls = bool(waiting)
        for future in waiting:
            _settle(future, error=_copy(failure))
        if had_calls:
            self.pipeline.fail_queued(failure)
        elif self.pipeline.queued and not self.pipeline.closed:
            self.pipeline.flush()  # an idle connection closed (a Redis restart): reconnect for these

    async def stop(self, failure: Exception) -> None:
        if self.connecting is not None:
            self.connecting.cancel()
            try:
                await self.connecting
            except asyncio.CancelledError:
                pass
            self.connecting = None
        self._drop(failure)


def _reader(connection: AbstractConnection) -> hiredis.Reader:
    """A reply parser set as redis-py sets its own: its exception classes, its decoding."""
    options: dict[str, Any] = {"protocolError": redis.exceptions.InvalidResponse, "replyError": BaseParser.parse_error}
    if connection.encoder.decode_responses:
        options.update(encoding=connection.encoder.encoding, errors=connection.encoder.encoding_errors)
    return hiredis.Reader(**options)


def _redis_failure(error: Exception, timeout_s: float) -> Exception:
    if isinstance(error, redis.exceptions.RedisError):
        return error
    if isinstance(error, TimeoutError):
        return redis.exceptions.TimeoutError(f"Redis did not answer within {timeout_s} s")
    return redis.exceptions.ConnectionError(f"Redis connection failed: {error}")


def _settle(future: asyncio.Future[Any], *, error: BaseException) -> None:
    if not future.done():  # the caller was cancelled (its client left): nobody is waiting for this
        future.set_exception(error)


def _copy(failure: Exception) -> Exception:
    """One exception object per caller: a raised exception carries its own traceback."""
    try:
        copied = type(failure)(*failure.args)
    except Exception:  # noqa: BLE001 - an exception type with a constructor of its own
        return failure
    copied.__cause__ = failure.__cause__
    return copied
