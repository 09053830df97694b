"""Middleware: request id, timing, metrics, and the one place errors become JSON responses."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import time

import asyncpg
import orjson
import redis.exceptions
from aiohttp import web

from gateway.core import metrics
from gateway.core.call import Call
from gateway.core.errors import GatewayError, NotFound, ServiceUnavailable, from_ledger
from gateway.core.app_keys import SETTINGS
from ledger.transfers import LedgerError

log = logging.getLogger("tollgate.access")
CALL = web.RequestKey("call", Call)
# Foreign failures that mean "a store is unreachable", translated to one 503 here: PostgreSQL
# refusing or losing connections (class 08), an operator's intervention such as a restart,
# start-up or recovery ("the database system is starting up", class 57, which also holds query
# cancellation), a lack of resources ("too many clients", class 53), a read-only standby after
# a failover; the driver's own connection state; Redis unreachable; the network.
STORE_FAILURES = (asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError,
                  asyncpg.exceptions.InsufficientResourcesError, asyncpg.exceptions.ReadOnlySQLTransactionError,
                  asyncpg.InterfaceError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                  OSError, asyncio.TimeoutError)
KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
# What a handler may raise that has a defined answer: our errors, the ledger's refusals, store outages.
HANDLED_FAILURES = (GatewayError, LedgerError, *STORE_FAILURES)
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
# With a metrics listener of their own (TOLLGATE_METRICS_PORT), these are served only there, and
# it serves nothing else but /health.
OPERATOR_PATHS = frozenset(("/metrics", "/ready"))


def as_gateway_error(raised: BaseException, request_id: str) -> GatewayError:
    """The HTTP error for one of HANDLED_FAILURES (the JSON API and the AI routes share it)."""
    if isinstance(raised, GatewayError):
        return raised
    if isinstance(raised, LedgerError):
        return from_ledger(raised)
    log.warning("store unavailable request_id=%s: %s", request_id, type(raised).__name__)
    return ServiceUnavailable("a backing store is unavailable, retry shortly")


def error_body(code: str, message: str, request_id: str) -> dict:
    return {"error": {"code": code, "message": message, "request_id": request_id}}


def error_response(error: GatewayError, request_id: str,
                   extra_headers: dict[str, str] | None = None) -> web.Response:
    response = web.json_response(error_body(error.code, error.message, request_id),
                                 status=error.status, dumps=_dumps)
    # Headers earned before the failure (RateLimit-*) still apply; the error's own win.
    response.headers.update(extra_headers or {})
    response.headers.update(error.headers)
    return response


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def client_ip(request: web.Request, trust_forwarded: bool) -> str:
    """The peer address, or behind one trusted proxy the address that proxy appended.

    The rightmost X-Forwarded-For entry is the one our proxy wrote; entries left of it are
    whatever the client claimed and could be rotated to dodge the per-IP limit.
    """
    if trust_forwarded:
        forwarded = request.headers.getall("x-forwarded-for", [])
        last = forwarded[-1].rsplit(",", 1)[-1].strip() if forwarded else ""
        try:
            return str(ipaddress.ip_address(last))
        except ValueError:
            pass
    return request.remote or ""


def _listener_serves(request: web.Request, metrics_port: int) -> bool:
    """Whether the listener the request came in on serves its path (attack 2026-12-01, L9)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    on_metrics_listener = bool(sockname) and sockname[1] == metrics_port
    if request.path in OPERATOR_PATHS:
        return on_metrics_listener
    return not on_metrics_listener or request.path == "/health"


@web.middleware
async def observe(request: web.Request, handler) -> web.StreamResponse:
    incoming = request.headers.get("x-request-id", "")
    # 32 random hex digits, like uuid4().hex without building a UUID object per request.
    request_id = incoming if REQUEST_ID_PATTERN.match(incoming) else os.urandom(16).hex()
    settings = request.app[SETTINGS]
    call = Call(request_id=request_id, started_s=time.perf_counter(),
                client_ip=client_ip(request, settings.trust_forwarded))
    call.extra_headers["X-Request-Id"] = request_id
    request[CALL] = call
    try:
        if settings.metrics_port and not _listener_serves(request, settings.metrics_port):
            raise NotFound()
        response = await handler(request)
        if not call.status:
            call.status = response.status
    except HANDLED_FAILURES as raised:
        error = as_gateway_error(raised, request_id)
        call.status, call.outcome = error.status, error.outcome
        # Headers earned before a refusal (RateLimit-*) go with it; a store failure has none.
        earned = call.extra_headers if not isinstance(raised, STORE_FAILURES) else None
        response = error_response(error, request_id, earned)
    except web.HTTPException as error:
        call.status = error.status
        call.outcome = "no_route" if error.status in (404, 405) else "bad_request"
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            error.status, "bad_request")
        response = error_response(GatewayError(error.reason, code=code), request_id)
        response.set_status(error.status)
    except Exception:
        log.exception("unhandled error request_id=%s", request_id)
        call.status, call.outcome = 500, "error"
        response = error_response(GatewayError(), request_id)
    finally:
        elapsed = time.perf_counter() - call.started_s
        method = request.method if request.method in KNOWN_METHODS else "other"  # bounded label values
        metrics.labelled(metrics.REQUESTS, call.route, method, str(call.status), call.outcome).inc()
        metrics.labelled(metrics.REQUEST_SECONDS, call.route).observe(elapsed)
        if call.outcome == "rate_limited":
            metrics.RATE_LIMITED.inc()
    if not response.prepared:
        response.headers["X-Request-Id"] = request_id
    return response
