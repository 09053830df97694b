"""Middleware: request id, timing, metrics, and the one place failures become error answers — in
the shape the route chose (the gateway's JSON, or a provider's own on the AI routes)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import time

from aiohttp import web

from gateway.core import admin_origin, browser, metrics
from gateway.core.app_keys import ADMIN_ORIGIN, BROWSER_POLICY, ERROR_SHAPE_PREFIXES, SETTINGS
from gateway.core.logs import FIELDS, REQUEST_ID
from gateway.core.call import Call
from gateway.core.connections import SERVER_NAME
from gateway.core.error_shapes import error_response, shape_for_path
from gateway.core.errors import CLIENT_CLOSED_REQUEST, GatewayError, NotFound, ServiceUnavailable, from_ledger
from gateway.core.failures import STORE_FAILURES
from gateway.core.outcomes import Outcome
from ledger.transfers import LedgerError

log = logging.getLogger("tollgate.access")
CALL = web.RequestKey("call", Call)
KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
# What a handler may raise that has a defined answer: our errors, the ledger's refusals, store outages.
HANDLED_FAILURES = (GatewayError, LedgerError, *STORE_FAILURES)
# aiohttp's own HTTP errors (no route, method not allowed, body too large) by status.
HTTP_ERROR_CODES = {404: ("not_found", Outcome.NO_ROUTE), 405: ("method_not_allowed", Outcome.NO_ROUTE),
                    413: ("payload_too_large", Outcome.BAD_REQUEST)}
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
# With a metrics listener of their own (TOLLGATE_METRICS_PORT), these are served only there, and
# it serves nothing else but /health.
OPERATOR_PATHS = frozenset(("/metrics", "/ready"))


def as_gateway_error(raised: BaseException, request_id: str) -> GatewayError:
    """The HTTP error for a failure with a defined answer (one of HANDLED_FAILURES, or aiohttp's own)."""
    if isinstance(raised, GatewayError):
        return raised
    if isinstance(raised, LedgerError):
        return from_ledger(raised)
    if isinstance(raised, web.HTTPException):
        code, outcome = HTTP_ERROR_CODES.get(raised.status, ("bad_request", Outcome.BAD_REQUEST))
        error = GatewayError(raised.reason, code=code)
        error.status, error.outcome = raised.status, outcome
        return error
    log.warning("store unavailable request_id=%s: %s", request_id, type(raised).__name__)
    return ServiceUnavailable("a backing store is unavailable, retry shortly")


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
    on_metrics_listener = sockname is not None and sockname[1] == metrics_port
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
    context_token = REQUEST_ID.set(request_id)  # every log line of this request carries its id
    try:
        if settings.metrics_port and not _listener_serves(request, settings.metrics_port):
            raise NotFound()
        if not request.app[ADMIN_ORIGIN].serves(request):  # the admin UI on its own origin (decision 0027)
            raise NotFound(None if request.app[ADMIN_ORIGIN].served else admin_origin.OFF)
        answered = browser.preflight(request.app[BROWSER_POLICY], request) if browser.is_preflight(request) else None
        if answered is not None:
            call.route = "preflight"
        response = answered or await handler(request)
        if not call.status:
            call.status = response.status
    except (*HANDLED_FAILURES, web.HTTPException) as raised:
        if call.route == "unknown":  # refused before any handler (no route): shaped by its path
            prefixes = request.app[ERROR_SHAPE_PREFIXES]
            call.error_shape = shape_for_path(request.path, prefixes)
        error = as_gateway_error(raised, request_id)
        call.status = error.status
        call.fail(error.outcome)  # a stage may have recorded the failure's cause first
        # Headers earned before a refusal (RateLimit-*) go with it; a store failure has none.
        earned = call.extra_headers if not isinstance(raised, STORE_FAILURES) else None
        response = error_response(call.error_shape, error, request_id, earned)
    except asyncio.CancelledError:
        # The client left and the server cancelled the handler (run with handler_cancellation):
        # counted as a disconnect, with the status it had started to answer, if any.
        call.status = call.status or CLIENT_CLOSED_REQUEST
        call.fail(Outcome.CLIENT_DISCONNECTED)
        raise
    except Exception:
        log.exception("unhandled error request_id=%s", request_id)
        call.status = 500
        call.fail(Outcome.ERROR)
        response = error_response(call.error_shape, GatewayError(), request_id)
    finally:
        _record(request, call, settings.access_log)
        REQUEST_ID.reset(context_token)
    if not response.prepared:
        response.headers["X-Request-Id"] = request_id
    return response


def _record(request: web.Request, call: Call, access_log: str) -> None:
    """The request's metrics, and its access-log line when TOLLGATE_ACCESS_LOG asks for one."""
    elapsed = time.perf_counter() - call.started_s
    method = request.method if request.method in KNOWN_METHODS else "other"  # bounded label values
    metrics.labelled(metrics.REQUESTS, call.route, method, str(call.status), call.outcome.value).inc()
    metrics.labelled(metrics.REQUEST_SECONDS, call.route).observe(elapsed)
    if call.outcome == Outcome.RATE_LIMITED:
        metrics.RATE_LIMITED.inc()
    if access_log == "all" or (access_log == "errors" and call.status >= 500):
        # The path without its query: a query can hold a credential (Gemini's ?key=).
        log.info("%s %s %d", method, request.path, call.status, extra={FIELDS: {
            "method": method, "path": request.path, "route": call.route, "status": call.status,
            "outcome": str(call.outcome), "duration_ms": round(elapsed * 1000, 3), "client_ip": call.client_ip,
            "bytes_in": call.bytes_in, "bytes_out": call.bytes_out}})


async def secure_response(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the security and CORS headers of gateway/core/browser.py on every answer
    (the desktop proxy's answers are the target's own HTML and keep their framing rules), and the
    Server header (one hook per answer: this also replaces aiohttp's and a target's `Server`)."""
    response.headers["Server"] = SERVER_NAME
    call = request.get(CALL)
    browser.secure(request.app[BROWSER_POLICY], request, response, own=call is None or call.route != "proxy")
