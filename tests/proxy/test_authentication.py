"""Access-token authentication: the Redis cache and its PostgreSQL fallback, expiry, revocation, device binding."""

from __future__ import annotations

import datetime as dt

from devkit.embedded import free_port
from gateway.accounts import access_tokens
from gateway.core import metrics
from gateway.core.app_keys import DATABASE
from gateway.proxy.resources import AUTHENTICATOR
from tests.support.accounts import make_token, proxy_headers
from tests.support.metrics import database_queries, settle
from tests.support.proxy import cookie_headers, error_of, open_browser_session
from tests.support.redis_calls import script_calls

# The auth cache: zero PostgreSQL queries on a warm hit, and what happens when Redis or PostgreSQL is down.


ECHO = "/api/v1/proxy/echo/x"


async def test_a_warm_cache_makes_zero_postgres_queries(gateway, database):
    issued = await make_token(database)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    await settle()
    before = database_queries()
    for _ in range(5):
        assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    await settle()
    assert database_queries() == before


async def test_a_warm_browser_session_makes_zero_postgres_queries(gateway, database):
    issued = await make_token(database)
    value = await open_browser_session(gateway, issued.token)
    assert (await gateway.get(ECHO, headers=cookie_headers(value))).status == 200  # fills Redis
    await settle()
    before = database_queries()
    for _ in range(5):
        assert (await gateway.get(ECHO, headers=cookie_headers(value))).status == 200
    await settle()
    assert database_queries() == before


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


async def test_postgres_down_keeps_cached_tokens_working(gateway, database, servers):
    issued = await make_token(database)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    await gateway.app[DATABASE].close()  # the gateway can no longer reach PostgreSQL
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    response = await gateway.get(ECHO, headers=proxy_headers("E" * 64))
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "service_unavailable"


# Tokens over HTTP: unknown, malformed, expired or revoked ones refused; one device at a time.


async def test_an_unknown_token_is_refused_with_401(gateway, database):
    response = await gateway.get(ECHO, headers=proxy_headers("A" * 64))
    assert response.status == 401
    assert (await error_of(response))["code"] == "invalid_token"


async def test_a_malformed_token_is_refused_without_a_lookup(gateway, database):
    before = metrics.AUTH_CACHE.labels("postgres_fallback")._value.get()
    response = await gateway.get(ECHO, headers=proxy_headers("short token with spaces"))
    assert response.status == 401
    assert (await error_of(response))["code"] == "invalid_token"
    assert metrics.AUTH_CACHE.labels("postgres_fallback")._value.get() == before


async def test_an_expired_token_is_refused_with_401(gateway, database):
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=3)
    issued = await make_token(database, hours=1, now=past)
    response = await gateway.get(ECHO, headers=proxy_headers(issued.token))
    assert response.status == 401
    assert (await error_of(response))["code"] == "token_expired"


async def test_a_cached_token_is_refused_once_its_expiry_passes(gateway, database, clock):
    issued = await make_token(database, hours=1)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    clock.advance(3601)
    response = await gateway.get(ECHO, headers=proxy_headers(issued.token))
    assert response.status == 401
    assert (await error_of(response))["code"] == "token_expired"


async def test_a_second_device_gets_409_while_the_first_is_active(gateway, database):
    issued = await make_token(database)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "laptop"))).status == 200
    response = await gateway.get(ECHO, headers=proxy_headers(issued.token, "phone"))
    assert response.status == 409
    assert (await error_of(response))["code"] == "device_conflict"
    assert int(response.headers["Retry-After"]) > 0


async def test_the_device_binding_is_released_after_five_idle_minutes(gateway, database, clock):
    issued = await make_token(database)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "laptop"))).status == 200
    clock.advance(299)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "phone"))).status == 409
    clock.advance(301)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "phone"))).status == 200
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "laptop"))).status == 409


async def test_requests_keep_the_binding_alive(gateway, database, clock):
    issued = await make_token(database)
    for _ in range(3):
        assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "laptop"))).status == 200
        clock.advance(200)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token, "phone"))).status == 409


async def test_revocation_takes_effect_on_the_next_request(gateway, database):
    issued = await make_token(database)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200
    token_hash = await access_tokens.revoke(database, issued.id, now=dt.datetime.now(dt.timezone.utc))
    await gateway.app[AUTHENTICATOR].forget(token_hash)
    response = await gateway.get(ECHO, headers=proxy_headers(issued.token))
    assert response.status == 401
    assert (await error_of(response))["code"] == "token_revoked"


async def test_a_desktop_request_is_one_script_call_on_a_single_redis(gateway_factory, database, redis_client):
    """The IP's window, the token's record, binding and window and the user's window in one call: a
    single Redis has no slot rule (decision 0023), and each call is a round trip of latency."""
    gateway = await gateway_factory(ip_limit_per_min=100, plan_limits_per_min={"free": 50, "premium": 5,
                                                                               "enterprise": 0})
    issued = await make_token(database)
    assert (await gateway.get(ECHO, headers=proxy_headers(issued.token))).status == 200  # cold: miss, fill
    before = await script_calls(redis_client)
    for remaining in (48, 47, 46, 45):
        response = await gateway.get(ECHO, headers=proxy_headers(issued.token))
        assert response.status == 200
        # The tightest window still names the headers: the user's (50) and the token's, before the IP's (100).
        assert (response.headers["RateLimit-Limit"], response.headers["RateLimit-Remaining"]) == ("50", str(remaining))
    assert await script_calls(redis_client) - before == 4
    # The same key names as a cluster's per-slot calls: switching modes needs no migration.
    user_id = await database.fetchval("SELECT user_id FROM access_tokens WHERE id = $1", issued.id)
    assert await redis_client.zcard(f"tg:{{u:{user_id}}}:rl") == 5
    assert await redis_client.zcard("tg:{ip:127.0.0.1}:rl") == 5
