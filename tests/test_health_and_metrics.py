"""Health, readiness and the Prometheus exposition."""

from __future__ import annotations

from gateway.embedded import free_port
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
