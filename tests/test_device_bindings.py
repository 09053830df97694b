"""One token, one device — across workers while Redis is down, and across a Redis that comes back
empty (attack L4): the PostgreSQL fallback keeps the binding in device_bindings."""

from __future__ import annotations

import asyncio

import redis.asyncio as redis_asyncio

from devkit.embedded import free_port
from tests.conftest import make_token, proxy_headers
from tests.test_credential_cache import start_gateway

ECHO = "/api/v1/proxy/echo/x"


async def test_two_workers_on_a_dead_redis_bind_a_token_to_one_device(gateway_factory, database):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    first, second = await gateway_factory(redis_url=dead), await gateway_factory(redis_url=dead)
    issued = await make_token(database)
    assert (await first.get(ECHO, headers=proxy_headers(issued.token, "laptop"))).status == 200
    refused = await second.get(ECHO, headers=proxy_headers(issued.token, "phone"))
    assert refused.status == 409
    assert (await refused.json())["error"]["code"] == "device_conflict"
    assert 1 <= int(refused.headers["Retry-After"]) <= first.settings.device_idle_s
    assert (await second.get(ECHO, headers=proxy_headers(issued.token, "laptop"))).status == 200


async def test_a_binding_lapses_after_the_idle_time_on_a_dead_redis(gateway_factory, database, clock):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    first, second = await gateway_factory(redis_url=dead), await gateway_factory(redis_url=dead)
    issued = await make_token(database)
    assert (await first.get(ECHO, headers=proxy_headers(issued.token, "laptop"))).status == 200
    clock.advance(first.settings.device_idle_s + 1)
    assert (await second.get(ECHO, headers=proxy_headers(issued.token, "phone"))).status == 200
    assert (await first.get(ECHO, headers=proxy_headers(issued.token, "laptop"))).status == 409


async def test_a_redis_that_comes_back_empty_keeps_the_outage_binding(gateway_factory, database, partition,
                                                                     frozen_redis):
    relay, url = partition
    redis, _ = frozen_redis
    gateway = await start_gateway(gateway_factory, url)
    issued = await make_token(database)
    relay.set_cut(True)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "laptop"))).status == 200
    direct = redis_asyncio.from_url(redis.url)
    await direct.flushall()  # as a restart without persistence would leave it
    await direct.aclose()
    relay.set_cut(False)
    await asyncio.sleep(gateway.settings.redis_retry_after_s + 0.1)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "phone"))).status == 409
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "laptop"))).status == 200
