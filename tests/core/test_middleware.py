"""The middleware: request ids, JSON errors (store outages: 503), metric labels, listeners, client addresses."""

from __future__ import annotations

import aiohttp
import asyncpg
import pytest

from devkit.embedded import free_port
from tests.support.accounts import ADMIN, make_token, proxy_headers
from tests.support.store_faults import RestartingPostgres


async def test_login_while_postgres_is_down_is_a_503(gateway, database):
    from gateway.core.app_keys import DATABASE

    await gateway.app[DATABASE].close()
    response = await gateway.post("/api/v1/auth/login", json=ADMIN)
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "service_unavailable"


REFUSALS = {"starting up": ("57P03", "the database system is starting up"),
            "too many connections": ("53300", "sorry, too many clients already"),
            "shutting down": ("57P01", "terminating connection due to administrator command")}


@pytest.mark.parametrize("sqlstate, message", REFUSALS.values(), ids=REFUSALS.keys())
@pytest.mark.parametrize("method, path", [("GET", "/api/v1/bundles"), ("POST", "/api/v1/auth/login")])
async def test_a_database_that_refuses_connections_is_a_503(gateway_factory, database, servers, sqlstate,
                                                             message, method, path):
    postgres = RestartingPostgres(servers.database_url)
    gateway = await gateway_factory(database_url=await postgres.start(servers.database_url))
    postgres.refuse(sqlstate, message)
    try:
        response = await gateway.request(method, path, json={"email": "a@example.com", "password": "long enough"})
        assert (response.status, (await response.json())["error"]["code"]) == (503, "service_unavailable")
        assert postgres.refused > 0
    finally:
        await postgres.close()


async def test_unknown_routes_are_json_404s(gateway):
    response = await gateway.get("/nope")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


async def test_a_request_id_is_echoed_when_well_formed(gateway):
    response = await gateway.get("/health", headers={"X-Request-Id": "abc12345-req"})
    assert response.headers["X-Request-Id"] == "abc12345-req"
    response = await gateway.get("/health", headers={"X-Request-Id": "bad id\twith tab"})
    assert response.headers["X-Request-Id"] != "bad id\twith tab"


async def test_unusual_methods_share_one_metric_label(gateway):
    # The HTTP parser refuses made-up methods outright; the ones it knows beyond ours are "other".
    for method in ("PROPFIND", "MKCOL", "LOCK"):
        assert (await gateway.request(method, "/health")).status == 405
    text = await (await gateway.get("/metrics")).text()
    assert 'method="other"' in text
    assert "PROPFIND" not in text and "MKCOL" not in text


# /metrics and /ready are for operators (attack 2026-12-01, L9): a token, a listener of their own, or both.

METRICS_TOKEN = "metrics-token-for-tests-0123456789"


async def test_with_a_metrics_port_the_public_port_does_not_serve_metrics_or_ready(gateway_factory):
    gateway = await gateway_factory(metrics_port=free_port())
    statuses = [(await gateway.get(path)).status for path in ("/metrics", "/ready", "/health")]
    assert statuses == [404, 404, 200]


async def test_with_a_metrics_port_it_serves_metrics_ready_and_health_only(gateway_factory):
    port = free_port()
    await gateway_factory(metrics_port=port)
    async with aiohttp.ClientSession() as session:
        answers = {}
        for path in ("/metrics", "/ready", "/health", "/api/v1/bundles", "/api/v1/proxy/echo/x"):
            async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                answers[path] = (response.status, await response.text())
    assert [status for status, _ in answers.values()] == [200, 200, 200, 404, 404]
    assert "tollgate_http_requests_total" in answers["/metrics"][1]


async def test_a_metrics_port_and_a_token_together(gateway_factory):
    port = free_port()
    await gateway_factory(metrics_port=port, metrics_token=METRICS_TOKEN)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as refused:
            assert refused.status == 401
        async with session.get(f"http://127.0.0.1:{port}/metrics",
                               headers={"Authorization": f"Bearer {METRICS_TOKEN}"}) as allowed:
            assert allowed.status == 200


ECHO = "/api/v1/proxy/echo/x"


async def test_behind_a_trusted_proxy_the_rightmost_forwarded_address_is_the_client(gateway_factory,
                                                                                  database):
    gateway = await gateway_factory(trust_forwarded=True, ip_limit_per_min=1)
    first = await make_token(database, email="a@example.com")
    second = await make_token(database, email="b@example.com")
    spoofed = {"X-Forwarded-For": "1.1.1.1, 203.0.113.9"}
    assert (await gateway.get(ECHO, headers=proxy_headers(first.token, **spoofed))).status == 200
    rotated = {"X-Forwarded-For": "2.2.2.2, 203.0.113.9"}
    assert (await gateway.get(ECHO, headers=proxy_headers(second.token, **rotated))).status == 429


@pytest.mark.parametrize("failure", [asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
                                     asyncpg.exceptions.SerializationError("could not serialize access")])
def test_a_transaction_postgresql_rolled_back_whole_is_a_503_to_retry(failure):
    """Class 40 (deadlock, serialization): nothing was written, so the answer is 'retry', never a 500."""
    from gateway.core.middleware import HANDLED_FAILURES, as_gateway_error

    assert isinstance(failure, HANDLED_FAILURES)
    error = as_gateway_error(failure, "request-1")
    assert (error.status, error.code) == (503, "service_unavailable")
