"""Health endpoints: /health (the process answers), /ready (its dependencies answer), /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.core import metrics
from gateway.core.errors import Unauthenticated
from gateway.core.json_body import json_response
from gateway.core.app_keys import DATABASE, READINESS_PROBES, REDIS, SETTINGS
from gateway.core.middleware import CALL

CHECK_TIMEOUT_S = 2.0


async def health(request: web.Request) -> web.Response:
    request[CALL].route = "health"
    return json_response({"status": "ok"})


def _require_operator(request: web.Request) -> None:
    """/metrics and /ready tell per-model credits, request counts and backend health: with
    TOLLGATE_METRICS_TOKEN set they need it as a bearer token (attack 2026-12-01, L9)."""
    token = request.app[SETTINGS].metrics_token
    if not token:
        return
    presented = request.headers.get("authorization", "").encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(presented, b"Bearer " + token.value.encode()):
        raise Unauthenticated("this endpoint needs the metrics token", code="invalid_metrics_token",
                              headers={"WWW-Authenticate": "Bearer"})


async def watch_backends(app: web.Application, interval_s: float) -> None:
    """Keep tollgate_backend_up current: the operator's outage alerts read it between scrapes of /ready."""
    while True:
        database, redis = await asyncio.gather(_check(app[DATABASE].fetchval("SELECT 1")), _check(app[REDIS].ping()))
        metrics.labelled(metrics.BACKEND_UP, "postgres").set(database == "ok")
        metrics.labelled(metrics.BACKEND_UP, "redis").set(redis == "ok")
        await asyncio.sleep(interval_s)


async def watch_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(watch_backends(app, app[SETTINGS].watch_interval_s), name="backend-watch")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _check(probe) -> str:
    try:
        await asyncio.wait_for(probe, CHECK_TIMEOUT_S)
        return "ok"
    except Exception as error:  # a readiness probe reports every failure, it never raises
        return f"down: {type(error).__name__}"


async def ready(request: web.Request) -> web.Response:
    """200 while the gateway can authenticate and reach what its wings registered (the target);
    503 otherwise. Redis alone down is "degraded" (PostgreSQL vouches for tokens, limits become
    per-process)."""
    request[CALL].route = "health"
    _require_operator(request)
    probes = request.app[READINESS_PROBES]
    database, redis, *others = await asyncio.gather(
        _check(request.app[DATABASE].fetchval("SELECT 1")),
        _check(request.app[REDIS].ping()),
        *(_check(probe(request.app)) for probe in probes.values()),
    )
    checks = {"postgres": database, "redis": redis, **dict(zip(probes, others))}
    if any(result != "ok" for result in others) or (database != "ok" and redis != "ok"):
        status, code = "unavailable", 503
    elif database != "ok" or redis != "ok":
        status, code = "degraded", 200
    else:
        status, code = "ok", 200
    return json_response({"status": status, "checks": checks}, status=code)


async def metrics_endpoint(request: web.Request) -> web.Response:
    request[CALL].route = "metrics"
    _require_operator(request)
    body, content_type = metrics.render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics_endpoint)
