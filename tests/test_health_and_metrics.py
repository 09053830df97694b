"""Health, readiness and the Prometheus exposition."""

from __future__ import annotations

import aiohttp
import pytest

from devkit.embedded import free_port
from tests.conftest import make_token, proxy_headers


async def test_health_answers_without_dependencies(gateway):
    response = await gateway.get("/health")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_ready_checks_postgres_redis_and_target(gateway):
    response = await gateway.get("/ready")
    assert response.status == 200
    assert await response.json() == {"status": "ok", "checks": {"postgres": "ok", "redis": "ok",
                                                                 "target": "ok"}}


async def test_ready_is_503_when_the_target_is_down(gateway_factory):
    gateway = await gateway_factory(target_url=f"http://127.0.0.1:{free_port()}")
    response = await gateway.get("/ready")
    assert response.status == 503
    assert (await response.json())["checks"]["target"].startswith("down")


async def test_metrics_expose_request_auth_and_session_series(gateway, database):
    issued = await make_token(database)
    await gateway.get("/api/v1/proxy/echo/x", headers=proxy_headers(issued.token))
    response = await gateway.get("/metrics")
    text = await response.text()
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    for series in ('tollgate_http_requests_total{method="GET",outcome="ok",route="proxy",status="200"}',
                   'tollgate_auth_cache_lookups_total{result="postgres_fallback"}',
                   "tollgate_http_request_duration_seconds_bucket", "tollgate_upstream_requests_total",
                   "tollgate_rate_limited_total", "tollgate_session_updates_flushed_total"):
        assert series in text, series


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


@pytest.mark.parametrize("path", ["/metrics", "/ready"])
async def test_with_a_metrics_token_operator_endpoints_need_it(gateway_factory, path):
    gateway = await gateway_factory(metrics_token=METRICS_TOKEN)
    statuses = [(await gateway.get(path, headers=headers)).status for headers in (
        {}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {METRICS_TOKEN}"})]
    assert statuses == [401, 401, 200]


async def test_a_refused_scrape_gets_the_documented_error(gateway_factory):
    gateway = await gateway_factory(metrics_token=METRICS_TOKEN)
    response = await gateway.get("/metrics")
    error = (await response.json())["error"]
    assert (error["code"], error["request_id"]) == ("invalid_metrics_token", response.headers["X-Request-Id"])


async def test_health_stays_public_with_a_metrics_token(gateway_factory):
    gateway = await gateway_factory(metrics_token=METRICS_TOKEN)
    assert (await gateway.get("/health")).status == 200


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
