"""The Prometheus exposition: the series a proxied request leaves."""

from __future__ import annotations

from tests.support.accounts import make_token, proxy_headers


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
