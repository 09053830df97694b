"""Auto-pipelined Redis script calls (decision 0022): one write per tick, one reply per caller,
errors per call, NOSCRIPT reloads, and outages that fail every waiting call in bounded time."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
import redis.asyncio as redis_asyncio
import redis.exceptions

from gateway.core.redis_pipeline import ScriptPipeline, pipeline_connections
from tests.support.accounts import make_token, proxy_headers
from tests.support.store_faults import Partition

ECHO_SCRIPT = "return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}"
# Raises inside Redis for one argument only: a script error is that call's own.
PICKY_SCRIPT = "if ARGV[1] == 'bad' then return redis.error_reply('refused ' .. ARGV[1]) end return ARGV[1]"


class CountingRelay:
    """A TCP relay in front of Redis that counts the chunks each client connection wrote."""

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.chunks_to_redis = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.redis_port)

        async def pipe(source, sink, counted: bool) -> None:
            try:
                while data := await source.read(1 << 20):
                    if counted:
                        self.chunks_to_redis += 1
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer, True), pipe(upstream_reader, writer, False))

    async def close(self) -> None:
        self.server.close()


def _pipeline(client: redis_asyncio.Redis, timeout_s: float = 2.0, lanes: int = 1) -> ScriptPipeline:
    return ScriptPipeline(pipeline_connections(client), timeout_s=timeout_s, lanes=lanes)


async def test_calls_made_in_one_tick_reach_redis_in_one_write(servers):
    relay = CountingRelay(int(servers.redis_url.rsplit(":", 1)[1].split("/")[0]))
    client = redis_asyncio.from_url(await relay.start(), decode_responses=True)
    pipeline = _pipeline(client)
    script = client.register_script(ECHO_SCRIPT)
    try:
        await pipeline.evalsha(script, ["pipeline:warm"], ["0"])  # connects and caches the script
        written_before = relay.chunks_to_redis
        prefix = f"pipeline:{os.urandom(4).hex()}"  # keys of this run only: INCR counts from 1
        replies = await asyncio.gather(*(pipeline.evalsha(script, [f"{prefix}:k{n}"], [str(n)]) for n in range(50)))
        assert replies == [[f"{prefix}:k{n}", str(n), 1] for n in range(50)]
        assert relay.chunks_to_redis - written_before == 1  # fifty calls, one write
    finally:
        await pipeline.close()
        await client.aclose()
        await relay.close()


@pytest.mark.parametrize("lanes", [1, 3])
async def test_calls_over_many_ticks_and_lanes_each_get_their_own_reply(redis_client, lanes):
    pipeline = _pipeline(redis_client, lanes=lanes)
    script = redis_client.register_script(ECHO_SCRIPT)
    prefix = f"pipeline:{os.urandom(4).hex()}"
    try:
        spread = await asyncio.gather(*(_later(pipeline, script, prefix, n) for n in range(60)))
        assert spread == [[f"{prefix}:s{n}", str(n), 1] for n in range(60)]
    finally:
        await pipeline.close()


async def _later(pipeline: ScriptPipeline, script, prefix: str, number: int):
    for _ in range(number % 4):
        await asyncio.sleep(0)
    return await pipeline.evalsha(script, [f"{prefix}:s{number}"], [str(number)])


async def test_an_error_reply_fails_only_its_own_call(redis_client):
    pipeline = _pipeline(redis_client)
    script = redis_client.register_script(PICKY_SCRIPT)
    try:
        answers = await asyncio.gather(*(pipeline.evalsha(script, [], [word]) for word in ("a", "bad", "c")),
                                       pipeline.execute("SET", "pipeline:x", None),  # redis-py refuses None
                                       return_exceptions=True)
        assert answers[0] == "a" and answers[2] == "c"
        assert isinstance(answers[1], redis.exceptions.ResponseError) and "refused bad" in str(answers[1])
        assert isinstance(answers[3], redis.exceptions.DataError)
        assert await pipeline.evalsha(script, [], ["d"]) == "d"  # the connection stayed in step
    finally:
        await pipeline.close()


async def test_a_script_redis_lost_is_loaded_again(redis_client):
    pipeline = _pipeline(redis_client)
    script = redis_client.register_script(ECHO_SCRIPT)
    try:
        assert await pipeline.evalsha(script, ["pipeline:a"], ["1"]) == ["pipeline:a", "1", 1]
        await redis_client.script_flush()
        replies = await asyncio.gather(*(pipeline.evalsha(script, ["pipeline:a"], ["2"]) for _ in range(3)))
        assert sorted(reply[2] for reply in replies) == [2, 3, 4]
        assert await redis_client.script_exists(script.sha) == [True]
    finally:
        await pipeline.close()


async def test_a_stuck_redis_fails_every_waiting_call_in_time_then_recovers(frozen_redis):
    embedded, pid = frozen_redis
    client = redis_asyncio.from_url(embedded.url, decode_responses=True)
    pipeline = _pipeline(client, timeout_s=0.3)
    try:
        assert await pipeline.execute("PING") == "PONG"  # raw replies: no redis-py response callbacks
        os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        answers = await asyncio.gather(*(pipeline.execute("INCR", "pipeline:n") for _ in range(20)),
                                       return_exceptions=True)
        assert all(isinstance(answer, redis.exceptions.TimeoutError) for answer in answers)
        assert time.monotonic() - started < 1.5  # one batch deadline, not one per queued batch
        os.kill(pid, signal.SIGCONT)
        await asyncio.sleep(0.1)  # the commands Redis had already received still run once it thaws
        assert await pipeline.execute("SET", "pipeline:after", "1") == "OK"
    finally:
        os.kill(pid, signal.SIGCONT)
        await pipeline.close()
        await client.aclose()


async def test_concurrent_desktop_requests_are_each_counted_in_the_rate_window(gateway_factory, database):
    gateway = await gateway_factory(plan_limits_per_min={"free": 20, "premium": 5, "enterprise": 0})
    issued = await make_token(database)
    responses = await asyncio.gather(*(gateway.get("/api/v1/proxy/echo/x", headers=proxy_headers(issued.token))
                                       for _ in range(30)))
    statuses = sorted(response.status for response in responses)
    assert statuses == [200] * 20 + [429] * 10
    remaining = sorted(int(r.headers["RateLimit-Remaining"]) for r in responses if r.status == 200)
    assert remaining == list(range(20))  # every admitted call got its own reply, none another's


async def test_closing_fails_the_calls_in_flight_instead_of_leaving_them_waiting(frozen_redis):
    embedded, pid = frozen_redis
    client = redis_asyncio.from_url(embedded.url, decode_responses=True)
    pipeline = _pipeline(client, timeout_s=30.0)
    try:
        assert await pipeline.execute("PING") == "PONG"
        os.kill(pid, signal.SIGSTOP)
        waiting = [asyncio.ensure_future(pipeline.execute("INCR", "pipeline:closing")) for _ in range(5)]
        await asyncio.sleep(0.05)  # the batch is written and its lane waits for replies
        await asyncio.wait_for(pipeline.close(), 2)
        answers = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 2)
        assert all(isinstance(answer, redis.exceptions.ConnectionError) for answer in answers)
    finally:
        os.kill(pid, signal.SIGCONT)
        await client.aclose()


async def test_a_connection_lost_mid_batch_fails_that_batch_at_once_then_reconnects(frozen_redis):
    embedded, pid = frozen_redis
    relay = Partition(embedded.port)
    client = redis_asyncio.from_url(await relay.start(), decode_responses=True)
    pipeline = _pipeline(client, timeout_s=30.0)  # the loss, not the deadline, must end the wait
    try:
        assert await pipeline.execute("PING") == "PONG"
        os.kill(pid, signal.SIGSTOP)  # the batch reaches Redis and waits there
        waiting = [asyncio.ensure_future(pipeline.execute("INCR", "pipeline:lost")) for _ in range(5)]
        await asyncio.sleep(0.05)
        behind = asyncio.ensure_future(pipeline.execute("INCR", "pipeline:lost"))  # queued behind the batch
        relay.set_cut(True)
        answers = await asyncio.wait_for(asyncio.gather(*waiting, behind, return_exceptions=True), 5)
        assert all(isinstance(answer, redis.exceptions.ConnectionError) for answer in answers)
        relay.set_cut(False)
        os.kill(pid, signal.SIGCONT)
        assert await asyncio.wait_for(pipeline.execute("PING"), 5) == "PONG"  # a new connection
    finally:
        os.kill(pid, signal.SIGCONT)
        await pipeline.close()
        await client.aclose()
        await relay.close()


async def test_a_redis_restart_between_calls_fails_no_call_and_scripts_are_loaded_again(restartable_redis):
    embedded, stop = restartable_redis
    client = redis_asyncio.from_url(embedded.url, decode_responses=True)
    pipeline = _pipeline(client)
    script = client.register_script(ECHO_SCRIPT)
    try:
        assert await pipeline.evalsha(script, ["pipeline:r"], ["1"]) == ["pipeline:r", "1", 1]
        stop()  # its connections closed, its keys and script cache gone
        embedded.start()
        await asyncio.sleep(0.1)  # the closed connection is noticed while idle
        replies = await asyncio.gather(*(pipeline.evalsha(script, ["pipeline:r"], ["2"]) for _ in range(3)))
        assert sorted(reply[2] for reply in replies) == [1, 2, 3]
    finally:
        await pipeline.close()
        await client.aclose()


async def test_error_replies_amid_a_batch_fail_only_their_calls(redis_client):
    pipeline = _pipeline(redis_client)
    try:
        await pipeline.execute("SET", "pipeline:text", "not a number")
        answers = await asyncio.gather(pipeline.execute("INCR", "pipeline:count"),
                                       pipeline.execute("INCR", "pipeline:text"),  # ERR not an integer
                                       pipeline.execute("NO-SUCH-COMMAND"),
                                       pipeline.execute("INCR", "pipeline:count"),
                                       return_exceptions=True)
        assert [answers[0], answers[3]] == [1, 2]
        assert all(isinstance(answer, redis.exceptions.ResponseError) for answer in answers[1:3])
        assert "not an integer" in str(answers[1]) and "unknown command" in str(answers[2])
    finally:
        await pipeline.close()


async def test_a_redis_that_cannot_be_reached_fails_the_queued_calls_then_recovers(restartable_redis):
    embedded, stop = restartable_redis
    client = redis_asyncio.from_url(embedded.url, decode_responses=True)
    pipeline = _pipeline(client, timeout_s=1.0)
    try:
        stop()
        answers = await asyncio.gather(*(pipeline.execute("PING") for _ in range(3)), return_exceptions=True)
        assert all(isinstance(answer, redis.exceptions.ConnectionError) for answer in answers)
        embedded.start()
        assert await pipeline.execute("PING") == "PONG"
    finally:
        await pipeline.close()
        await client.aclose()


class _RefusingConnection:
    """A connection whose handshake fails and whose clean-up fails too."""

    async def connect(self) -> None:
        raise redis.exceptions.ConnectionError("refused by the test")

    async def disconnect(self, nowait: bool = False) -> None:
        raise RuntimeError("clean-up failed too")


@pytest.mark.parametrize("failure", ["factory-raises", "connect-and-disconnect-raise"])
async def test_a_connection_that_fails_to_open_fails_its_calls_and_the_next_call_connects(redis_client, failure):
    real = pipeline_connections(redis_client)
    attempts = []

    def connect():
        attempts.append(failure)
        if len(attempts) > 1:
            return real()
        if failure == "factory-raises":
            raise ValueError("no connection object this time")
        return _RefusingConnection()

    pipeline = ScriptPipeline(connect, timeout_s=2.0)
    try:
        first = await asyncio.wait_for(asyncio.gather(pipeline.execute("PING"), return_exceptions=True), 5)
        assert isinstance(first[0], redis.exceptions.ConnectionError)
        assert await asyncio.wait_for(pipeline.execute("PING"), 5) == "PONG"
        assert len(attempts) == 2
    finally:
        await pipeline.close()


async def test_redis_closing_an_idle_connection_is_let_go_at_its_eof(redis_client):
    pipeline = _pipeline(redis_client)
    try:
        lane_id = await pipeline.execute("CLIENT", "ID")
        lane = pipeline.lanes[0]
        assert lane.eof_received() is False  # asyncio then closes the transport; the lane already let go
        assert lane.transport is None
        assert await pipeline.execute("CLIENT", "ID") != lane_id  # a new connection, no call failed
    finally:
        await pipeline.close()
