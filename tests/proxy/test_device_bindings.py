"""One token, one device while Redis is down or comes back empty: the PostgreSQL fallback (attack L4)."""

from __future__ import annotations

import asyncio

import redis.asyncio as redis_asyncio

from devkit.embedded import free_port
from tests.support.accounts import make_token, proxy_headers
from tests.support.store_faults import start_gateway

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


async def test_redis_down_still_binds_devices_per_process(gateway_factory, database):
    gateway = await gateway_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    issued = await make_token(database)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "a"))).status == 200
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "b"))).status == 409
