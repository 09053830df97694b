"""The auth cache: zero PostgreSQL queries on a warm hit, and what happens when Redis or PostgreSQL is down."""

from __future__ import annotations

import asyncio

from gateway import metrics
from gateway.embedded import free_port
from gateway.keys import DATABASE
from tests.conftest import make_token, proxy_headers

ECHO = "/api/v1/proxy/echo/x"


def database_queries() -> float:
    return metrics.DATABASE_QUERIES._value.get()


async def settle() -> None:
    # asyncpg reports queries to its loggers via call_soon; let those callbacks run.
    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_warm_cache_makes_zero_postgres_queries(gateway, database):
    issued = await make_token(database)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    await settle()
    before = database_queries()
    for _ in range(5):
        assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    await settle()
    assert database_queries() == before


async def test_the_query_counter_sees_a_cold_lookup(gateway, database):
    issued = await make_token(database)
    await settle()
    before = database_queries()
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    await settle()
    # The lookup itself, plus the pool's reset statement when the connection is released.
    assert database_queries() > before


async def test_a_cold_then_warm_lookup_is_counted_as_fallback_then_hit(gateway, database):
    issued = await make_token(database)
    fallback = metrics.AUTH_CACHE.labels("postgres_fallback")._value.get()
    hits = metrics.AUTH_CACHE.labels("redis_hit")._value.get()
    for _ in range(2):
        await gateway.get(ECHO, headers=proxy_headers(issued.token))
    assert metrics.AUTH_CACHE.labels("postgres_fallback")._value.get() == fallback + 1
    assert metrics.AUTH_CACHE.labels("redis_hit")._value.get() == hits + 1


async def test_unknown_tokens_are_remembered_briefly(gateway, database):
    await settle()
    before = database_queries()
    assert (await gateway.get(ECHO, headers=proxy_headers("C" * 64))).status == 401
    await settle()
    first_lookup = database_queries() - before
    assert first_lookup > 0
    assert (await gateway.get(ECHO, headers=proxy_headers("C" * 64))).status == 401
    await settle()
    assert database_queries() - before == first_lookup


async def test_redis_down_falls_back_to_postgres(gateway_factory, database):
    gateway = await gateway_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    issued = await make_token(database)
    response = await gateway.get(ECHO, headers=proxy_headers(issued.token))
    assert response.status == 200


async def test_redis_down_never_fails_open(gateway_factory, database):
    gateway = await gateway_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    response = await gateway.get(ECHO, headers=proxy_headers("D" * 64))
    assert response.status == 401


async def test_redis_down_still_binds_devices_per_process(gateway_factory, database):
    gateway = await gateway_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    issued = await make_token(database)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "a"))).status == 200
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "b"))).status == 409


async def test_redis_down_limits_rates_per_process(gateway_factory, database):
    gateway = await gateway_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0",
                                    plan_limits_per_min={"free": 2, "premium": 5, "enterprise": 0})
    issued = await make_token(database)
    statuses = [(await gateway.get(ECHO, headers=proxy_headers(issued.token))).status for _ in range(3)]
    assert statuses == [200, 200, 429]


async def test_redis_down_makes_ready_degraded(gateway_factory, database):
    gateway = await gateway_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    response = await gateway.get("/ready")
    body = await response.json()
    assert response.status == 200
    assert body["status"] == "degraded" and body["checks"]["redis"].startswith("down")


async def test_postgres_down_keeps_cached_tokens_working(gateway, database, servers):
    issued = await make_token(database)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    await gateway.app[DATABASE].close()  # the gateway can no longer reach PostgreSQL
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    response = await gateway.get(ECHO, headers=proxy_headers("E" * 64))
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "service_unavailable"
