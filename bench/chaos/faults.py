"""The faults the chaos run injects, each with how it is lifted: a killed worker, Redis restarted
empty, PostgreSQL stopped and started, and an upstream that turns slow, resets connections or answers 5xx."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as redis_asyncio

from bench.chaos.stack import Stack, kill_postgres, kill_redis, start_postgres

Step = Callable[[Stack], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class Fault:
    name: str
    inject: Step  # returns what it did, for the report
    lift: Step


async def _kill_worker(stack: Stack) -> str:
    pids = stack.worker_pids()
    if not pids:
        return "no worker to kill"
    os.kill(pids[0], signal.SIGKILL)
    return f"SIGKILL to worker {pids[0]} (of {pids})"


async def _worker_replaced(stack: Stack) -> str:
    return "nothing by hand: the master replaces the worker"


async def _flush_and_stop_redis(stack: Stack) -> str:
    client = redis_asyncio.from_url(stack.redis.url)
    try:
        keys = await client.dbsize()
        await client.flushall()
    finally:
        await client.aclose()
    await asyncio.to_thread(kill_redis, stack.redis)
    return f"FLUSHALL ({keys} keys), then SIGKILL to redis-server"


async def _start_redis(stack: Stack) -> str:
    await asyncio.to_thread(stack.redis.start)
    return "redis-server started again, empty"


async def _stop_postgres(stack: Stack) -> str:
    await asyncio.to_thread(kill_postgres, stack.postgres)
    return "pg_ctl stop -m immediate"


async def _start_postgres(stack: Stack) -> str:
    await asyncio.to_thread(start_postgres, stack.postgres)
    return "pg_ctl start (crash recovery)"


def _relay(mode: str, what: str) -> Fault:
    async def inject(stack: Stack) -> str:
        stack.relay.set_mode(mode)
        return what

    async def lift(stack: Stack) -> str:
        stack.relay.set_mode("pass")
        return "upstream relay back to pass-through"

    return Fault(f"upstream_{mode}", inject, lift)


FAULTS = (
    Fault("worker_killed", _kill_worker, _worker_replaced),
    Fault("redis_restarted_empty", _flush_and_stop_redis, _start_redis),
    Fault("postgres_stopped", _stop_postgres, _start_postgres),
    _relay("slow", "upstream answers slowly (1.5 s before each chunk; read timeouts are 4 s)"),
    _relay("reset", "upstream resets every connection (TCP RST)"),
    _relay("5xx", "upstream answers 503 to everything"),
)
