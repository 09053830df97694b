"""The AI routes: /openai/v1/*, /anthropic/v1/*, /gemini/{v1beta,v1}/*, in each provider's wire format.

One handler holds the decisions, one module per stage (decision 0016):

    check the path → authenticate the key → read the body → route it → authorize and price →
    reserve (hold) → forward → relay and meter → settle (whatever happened)

Refusals are raised; the middleware answers them in the provider's error shape (Call.error_shape),
so the official SDKs raise their usual exceptions.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from aiohttp import web

from gateway.ai import authentication, authorization, forwarding, relay, reservation, routes, settlement
from gateway.ai.resources import AI, Services, ai_ctx
from gateway.core.app_keys import ERROR_SHAPE_PREFIXES
from gateway.core.json_body import parse_object, read_bytes
from gateway.core.middleware import CALL

Route = Callable[[web.Request, dict | None], routes.CallSpec]
# Any rest of the path, a decoded newline included ('.' would not match one, and the path would
# fall to the JSON API's 404 instead of the provider's error shape).
TAIL = r"{tail:[\s\S]*}"


async def read_json(request: web.Request, limit: int) -> tuple[bytes, dict | None]:
    """The body as sent and parsed (size-capped, inflated); none for GET."""
    if request.method != "POST":
        return b"", None
    raw = await read_bytes(request, limit)
    return raw, parse_object(raw)


def make_handler(provider: str, route: Route):
    async def handler(request: web.Request) -> web.StreamResponse:
        call = request[CALL]
        call.route, call.error_shape = f"ai_{provider}", provider
        ai = request.app[AI]
        routes.check_path(request.raw_path, request.match_info["tail"])
        call.principal = await authentication.authenticate(ai.keys, request)
        raw, body = await read_json(request, ai.settings.ai_body_max_bytes)
        call.spec = route(request, body)
        return await run(ai, request, raw, body)

    return handler


async def run(ai: Services, request: web.Request, raw: bytes, body: dict | None) -> web.StreamResponse:
    """Authorize, hold, forward, relay; the call leaves settled whatever happens on the way."""
    call = request[CALL]
    call.price = authorization.authorize(ai.prices, call.principal, call.spec, call.client_ip)
    call.call_id = os.urandom(16).hex()
    payload, drop_usage_chunk = forwarding.upstream_body(call.spec, body)
    async with settlement.settled(ai, call):
        if call.spec.billed:
            await reservation.reserve(ai, call, raw, body, payload)
        upstream = await forwarding.send(ai, request, call, payload)
        return await relay.relay(ai, request, call, upstream, drop_usage_chunk)


def openai_route(request: web.Request, body: dict | None) -> routes.CallSpec:
    return routes.openai(request.match_info["tail"], request.method, body)


def anthropic_route(request: web.Request, body: dict | None) -> routes.CallSpec:
    return routes.anthropic(request.match_info["tail"], request.method, body)


def gemini_route(request: web.Request, body: dict | None) -> routes.CallSpec:
    return routes.gemini(request.match_info["tail"], request.method, body, request.query.get("alt"))


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(ai_ctx)
    app[ERROR_SHAPE_PREFIXES].extend([("/openai/", "openai"), ("/anthropic/", "anthropic"), ("/gemini/", "gemini")])
    app.router.add_route("*", "/openai/v1/" + TAIL, make_handler("openai", openai_route))
    app.router.add_route("*", "/anthropic/" + TAIL, make_handler("anthropic", anthropic_route))
    app.router.add_route("*", "/gemini/" + TAIL, make_handler("gemini", gemini_route))
