"""Health and readiness endpoints, the metrics token that guards the operators' ones, and the
background probes of PostgreSQL and Redis."""

from __future__ import annotations

import pytest

from devkit.embedded import free_port
from gateway.core.config import Secret
from tests.support.metrics import eventually_equals, gauge


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


async def test_redis_down_makes_ready_degraded(gateway_factory, database):
    gateway = await gateway_factory(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    response = await gateway.get("/ready")
    body = await response.json()
    assert response.status == 200
    assert body["status"] == "degraded" and body["checks"]["redis"].startswith("down")


# -- tollgate_backend_up: the background probes behind the outage alerts --------------------------

def backend_up(backend: str) -> str:
    return rf'tollgate_backend_up\{{backend="{backend}"\}}'


async def test_backends_are_reported_up(gateway_factory):
    gateway = await gateway_factory(watch_interval_s=0.05)
    assert await eventually_equals(gateway, backend_up("postgres"), 1.0) == 1.0
    assert await eventually_equals(gateway, backend_up("redis"), 1.0) == 1.0


async def test_a_redis_that_does_not_answer_is_reported_down(gateway_factory):
    gateway = await gateway_factory(watch_interval_s=0.05, redis_url=Secret(f"redis://127.0.0.1:{free_port()}/0"))
    assert await eventually_equals(gateway, backend_up("redis"), 0.0) == 0.0
    assert await gauge(gateway, backend_up("postgres")) == 1.0
