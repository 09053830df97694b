"""Errors in each provider's own shape, so official SDKs raise their usual exception types."""

from __future__ import annotations

import orjson
from aiohttp import web

from gateway.core.errors import GatewayError

OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "insufficient_quota",
                403: "permission_error", 404: "invalid_request_error", 408: "invalid_request_error", 409: "invalid_request_error",
                413: "invalid_request_error", 429: "rate_limit_error", 499: "api_error"}
ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                   403: "permission_error", 404: "not_found_error", 408: "invalid_request_error",
                   409: "invalid_request_error", 413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error"}
GEMINI_STATUSES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 402: "FAILED_PRECONDITION",
                   403: "PERMISSION_DENIED", 404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED", 409: "ABORTED", 413: "INVALID_ARGUMENT",
                   429: "RESOURCE_EXHAUSTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def error_body(provider: str, error: GatewayError, request_id: str) -> dict:
    status = error.status
    if provider == "anthropic":
        kind = ANTHROPIC_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": error.message}, "request_id": request_id}
    if provider == "gemini":
        return {"error": {"code": status, "message": error.message,
                          "status": GEMINI_STATUSES.get(status, "INTERNAL")}}
    if provider == "crm":
        return {"error": True, "code": error.code, "message": error.message, "request_id": request_id}
    return {"error": {"message": error.message, "type": OPENAI_TYPES.get(status, "api_error"), "param": None,
                      "code": error.code}}


def error_response(provider: str, error: GatewayError, request_id: str) -> web.Response:
    response = web.Response(body=orjson.dumps(error_body(provider, error, request_id)), status=error.status,
                            content_type="application/json")
    response.headers.update(error.headers)
    return response


def stream_error_frame(provider: str, error: GatewayError, request_id: str) -> bytes:
    """An error event for a stream that already started (the status line is gone)."""
    body = orjson.dumps(error_body(provider, error, request_id))
    if provider == "anthropic":
        return b"event: error\ndata: " + body + b"\n\n"
    if provider == "openai":
        return b"data: " + body + b"\n\n"
    return b""  # Gemini streams have no error event: the stream is closed cleanly
