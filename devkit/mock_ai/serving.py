"""The path of every AI request: read and log it, apply the fault, authenticate, build the answer, deliver it."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from devkit.mock_ai.faults import deliver, early_fault, pause
from devkit.mock_ai.replies import Builder, MockApiError, Reply, render_error
from devkit.mock_ai.state import AI_STATE_KEY, AiState


def lowercase_headers(request: web.Request) -> dict[str, str]:
    """Every received header, names lower-cased, repeated values joined by ", "."""
    joined: dict[str, str] = {}
    for name, value in request.headers.items():
        key = name.lower()
        joined[key] = f"{joined[key]}, {value}" if key in joined else value
    return joined


def presented_key(provider: str, request: web.Request) -> str | None:
    authorization = request.headers.get("Authorization", "")
    bearer = authorization[7:].strip() if authorization[:7].lower() == "bearer " else None
    if provider == "openai":
        return bearer
    if provider == "anthropic":
        return request.headers.get("x-api-key") or bearer  # the current SDK sends only the Bearer form
    return request.headers.get("x-goog-api-key") or request.query.get("key")


def authenticate(provider: str, request: web.Request, state: AiState) -> None:
    key = presented_key(provider, request)
    if key and state.accepts(key):
        if provider == "anthropic" and not request.headers.get("anthropic-version"):
            raise MockApiError(400, "anthropic-version: header is required")
        return
    if provider == "openai":
        if not key:
            raise MockApiError(401, "You didn't provide an API key. You need to provide your API key in an "
                                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        raise MockApiError(401, f"Incorrect API key provided: {key[:8]}****.", code="invalid_api_key")
    if provider == "anthropic":
        raise MockApiError(401, "x-api-key header is required" if not key else "invalid x-api-key")
    raise MockApiError(401, "API key not valid. Please pass a valid API key." if key else
                       "Method doesn't allow unregistered callers (callers without established identity). "
                       "Please use API Key or other form of API consumer identity to call this API.")


async def read_body(request: web.Request) -> tuple[bytes | None, Any, bool]:
    """(raw bytes, parsed JSON or None, parsed ok); a body over the app's size limit reads as None."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return None, None, False
    if not raw:
        return raw, None, request.method == "GET"
    try:
        return raw, json.loads(raw), True
    except (UnicodeDecodeError, ValueError):
        return raw, None, False


def record(state: AiState, request: web.Request, provider: str, raw: bytes | None, body: Any) -> None:
    state.requests.append({
        "provider": provider, "method": request.method, "path": request.rel_url.raw_path,
        "query": request.rel_url.raw_query_string, "headers": lowercase_headers(request),
        "body": body, "body_bytes": None if raw is None else len(raw), "time": time.time(),
    })


async def serve_ai(request: web.Request, provider: str, build: Builder) -> web.StreamResponse:
    state = request.app[AI_STATE_KEY]
    raw, body, parsed = await read_body(request)
    request_id = state.next_id()
    record(state, request, provider, raw, body)
    fault = state.take_fault(provider)
    try:
        if not await pause(request, state.latency_ms / 1000) or not await early_fault(request, fault):
            return web.Response(status=499)  # the connection is gone; aiohttp has nowhere to send this
        authenticate(provider, request, state)
        if raw is None:
            raise MockApiError(413, "Request body is too large.")
        if not parsed:
            raise MockApiError(400, "We could not parse the JSON body of your request. (HINT: This likely means "
                                    "you aren't using your HTTP library correctly.)")
        reply = build(body, request_id, request=request, state=state)
    except MockApiError as error:
        reply = render_error(provider, error, request_id)
    return await deliver(request, reply, fault, state)


def ai_handler(provider: str, build: Builder) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await serve_ai(request, provider, build)
    return handle


def unknown_path(body: Any, request_id: str, request: web.Request, **_: Any) -> Reply:
    raise MockApiError(404, f"Invalid URL ({request.method} {request.path})")
