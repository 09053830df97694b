"""The shapes an error answer takes: the gateway's JSON, or a provider's own on its AI routes (so
the official SDKs raise their usual exceptions). The middleware renders every error through here,
in the shape its route chose (Call.error_shape)."""

from __future__ import annotations

import html
from collections.abc import Iterable

import orjson
from aiohttp import web

from gateway.core.errors import GatewayError

OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "insufficient_quota",
                403: "permission_error", 404: "invalid_request_error", 408: "invalid_request_error",
                409: "invalid_request_error", 413: "invalid_request_error", 415: "invalid_request_error",
                417: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
                499: "api_error"}
ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                   403: "permission_error", 404: "not_found_error", 408: "invalid_request_error",
                   409: "invalid_request_error", 413: "request_too_large", 415: "invalid_request_error",
                   417: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
                   503: "overloaded_error"}
GEMINI_STATUSES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 402: "FAILED_PRECONDITION",
                   403: "PERMISSION_DENIED", 404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED", 409: "ABORTED",
                   413: "INVALID_ARGUMENT", 415: "INVALID_ARGUMENT", 417: "INVALID_ARGUMENT",
                   422: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE",
                   504: "DEADLINE_EXCEEDED"}
SHAPES = ("api", "openai", "anthropic", "gemini", "crm", "page")
# The admin UI's pages answer errors as a small HTML page (its own links lead back to it).
PAGE = """<!doctype html><html lang="en"><meta charset="utf-8"><title>{status} {title}</title>
<link rel="stylesheet" href="/admin/static/admin.css"><main class="error"><h1>{status} {title}</h1>
<p>{message}</p><p class="muted">request {request_id}</p><p><a href="/admin/">Back to the admin UI</a></p></main>
</html>"""


def error_body(shape: str, error: GatewayError, request_id: str) -> dict:
    status = error.status
    if shape == "anthropic":
        kind = ANTHROPIC_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": error.message}, "request_id": request_id}
    if shape == "gemini":
        return {"error": {"code": status, "message": error.message,
                          "status": GEMINI_STATUSES.get(status, "INTERNAL")}}
    if shape == "crm":  # the billing-CRM API's own envelope (/api/v1/generate, /api/v1/balance)
        return {"error": True, "code": error.code, "message": error.message, "request_id": request_id}
    if shape == "openai":
        return {"error": {"message": error.message, "type": OPENAI_TYPES.get(status, "api_error"),
                          "param": None, "code": error.code}}
    return {"error": {"code": error.code, "message": error.message, "request_id": request_id}}


def error_response(shape: str, error: GatewayError, request_id: str,
                   earned_headers: dict[str, str] | None = None) -> web.Response:
    """The answer to `error` in `shape`; headers earned before it (RateLimit-*) go with it, the
    error's own (Retry-After) win."""
    if shape == "page":
        text = PAGE.format(status=error.status, title=html.escape(error.code.replace("_", " ")),
                           message=html.escape(error.message), request_id=html.escape(request_id))
        response = web.Response(text=text, status=error.status, content_type="text/html")
    else:
        response = web.Response(body=orjson.dumps(error_body(shape, error, request_id)), status=error.status,
                                content_type="application/json")
    response.headers.update(earned_headers or {})
    response.headers.update(error.headers)
    response.headers["X-Request-Id"] = request_id
    return response


def shape_for_path(path: str, prefixes: Iterable[tuple[str, str]]) -> str:
    """The shape of a request no route has seen yet (refused before routing), by its path."""
    return next((shape for prefix, shape in prefixes if path.startswith(prefix)), "api")
