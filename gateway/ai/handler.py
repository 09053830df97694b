"""The AI routes: /openai/v1/*, /anthropic/v1/*, /gemini/{v1beta,v1}/*, /api/v1/generate, /api/v1/balance.

Every refusal is answered in the provider's own error shape, so SDKs raise their usual exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import aiohttp
import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

import ledger
from gateway.ai import calls, routes
from gateway.ai import provider_errors
from gateway.accounts.api_keys import ApiKeyAuthenticator
from gateway.api.keys import AI_KEYS
from gateway.ai.price_table import PriceTable
from gateway.api.prices import PRICES
from gateway.ai.providers import provider_for_model, upstreams
from gateway.ai.usage_log import UsageLog
from gateway.core.errors import BadRequest
from gateway.core.json_body import parse_object, read_bytes
from gateway.core.app_keys import CLOCK, CREDENTIAL_OUTBOX, DATABASE, REDIS, SETTINGS
from gateway.core.middleware import CALL, HANDLED_FAILURES, as_gateway_error

AI = web.AppKey("ai", calls.Services)
USAGE_LOG = web.AppKey("usage_log", UsageLog)


async def ai_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    timeout = aiohttp.ClientTimeout(total=None, connect=settings.ai_connect_timeout_s,
                                    sock_read=settings.ai_read_timeout_s)
    session = aiohttp.ClientSession(timeout=timeout, auto_decompress=True, cookie_jar=aiohttp.DummyCookieJar(),
                                    connector=aiohttp.TCPConnector(limit=settings.upstream_connections_max))
    prices = PriceTable(app[DATABASE], settings)
    await prices.load()
    app[PRICES] = prices
    app[AI_KEYS] = ApiKeyAuthenticator(settings, app[REDIS], app[DATABASE], app[CLOCK], app[CREDENTIAL_OUTBOX])
    usage_log = UsageLog(app[DATABASE], lambda: prices.prices)
    app[USAGE_LOG] = usage_log
    app[AI] = calls.Services(settings, app[CLOCK], app[DATABASE], app[AI_KEYS], prices, upstreams(settings),
                             session, usage_log)
    tasks = [asyncio.create_task(prices.run(settings.price_refresh_interval_s), name="prices"),
             asyncio.create_task(usage_log.run(settings.usage_flush_interval_s), name="usage-log")]
    yield
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    with contextlib.suppress(Exception):
        await usage_log.flush()  # the last rows out before the pool closes
    await session.close()


async def read_json(request: web.Request, limit: int) -> tuple[bytes, dict | None]:
    if request.method != "POST":
        return b"", None
    try:
        raw = await read_bytes(request, limit)
    except RequestPayloadError as error:
        # The body broke off or did not inflate (a corrupt Content-Encoding): the client's fault.
        raise BadRequest("the request body could not be read (truncated, or not in its Content-Encoding)",
                         code="invalid_body") from error
    return raw, parse_object(raw)


def _as_provider_error(provider: str, request: web.Request, raised: BaseException) -> web.Response:
    call = request[CALL]
    error = as_gateway_error(raised, call.request_id)
    call.status, call.outcome = error.status, error.outcome
    return provider_errors.error_response(provider, error, call.request_id)


Spec = Callable[[web.Request, dict | None], routes.CallSpec]


# Any rest of the path, a decoded newline included ('.' would not match one, and the path would
# fall to the JSON API's 404 instead of the provider's error shape).
TAIL = r"{tail:[\s\S]*}"


def make_handler(provider: str, spec_of: Spec):
    async def handler(request: web.Request) -> web.StreamResponse:
        call = request[CALL]
        call.route = f"ai_{provider}"
        services = request.app[AI]
        try:
            routes.check_path(request.raw_path, request.match_info["tail"])
            principal = await calls.authorize(services, request, call.client_ip)
            raw, body = await read_json(request, services.settings.ai_body_max_bytes)
            spec = spec_of(request, body)
            return await calls.run(services, request, spec, principal, body, raw, call.request_id)
        except HANDLED_FAILURES as error:
            return _as_provider_error(provider, request, error)

    return handler


def openai_spec(request: web.Request, body: dict | None) -> routes.CallSpec:
    return routes.openai(request.match_info["tail"], request.method, body)


def anthropic_spec(request: web.Request, body: dict | None) -> routes.CallSpec:
    return routes.anthropic(request.match_info["tail"], request.method, body)


def gemini_spec(request: web.Request, body: dict | None) -> routes.CallSpec:
    return routes.gemini(request.match_info["tail"], request.method, body, request.query.get("alt"))


# -- the billing-CRM API -----------------------------------------------------------------------


def generate_spec(body: dict) -> tuple[routes.CallSpec, dict]:
    """POST /api/v1/generate: the provider from the model name, the body in that provider's format."""
    model = body.get("model")
    if not isinstance(model, str) or not routes.MODEL.match(model):
        raise BadRequest("model: a model name is required", code="invalid_model")
    if body.get("stream") is True:
        raise BadRequest("/api/v1/generate answers whole responses; use the provider routes to stream",
                         code="stream_not_supported")
    provider = provider_for_model(model)
    if provider == "openai":
        return routes.openai("chat/completions", "POST", body), body
    if provider == "anthropic":
        return routes.anthropic("v1/messages", "POST", body), body
    if provider == "gemini":
        rest = {k: v for k, v in body.items() if k != "model"}
        return routes.gemini(f"v1beta/models/{model.removeprefix('models/')}:generateContent", "POST", rest,
                             None), rest
    raise BadRequest(f"cannot tell the provider of model {model!r} (gemini-*, gpt-*/o*, claude-*)",
                     code="unknown_provider")


async def generate(request: web.Request) -> web.StreamResponse:
    call = request[CALL]
    call.route = "ai_generate"
    services = request.app[AI]
    try:
        principal = await calls.authorize(services, request, call.client_ip)
        _, body = await read_json(request, services.settings.ai_body_max_bytes)
        spec, upstream_body = generate_spec(body)
        raw = orjson.dumps(upstream_body)
        response = await calls.run(services, request, spec, principal, upstream_body, raw, call.request_id)
        data = _json_or_text(response.body)
        if response.status >= 400:
            return web.Response(body=orjson.dumps({
                "error": True, "code": "upstream_error", "data": data,
                "message": f"the {spec.provider} upstream answered {response.status}"}),
                status=response.status, content_type="application/json")
        balance = await ledger.balance(services.pool, principal.user_id)
        metered = request[calls.LAST_CALL]
        used = metered.usage.total if metered.usage and metered.charge else 0
        return web.Response(body=orjson.dumps({
            "error": False, "data": data,
            "usage": {"tokens_used": used, "balance_remaining": ledger.format_micro(balance.available_micro)}}),
            content_type="application/json")
    except HANDLED_FAILURES as error:
        return _as_provider_error("crm", request, error)


def _json_or_text(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")


async def balance(request: web.Request) -> web.Response:
    """GET /api/v1/balance: credits in the billing-CRM's token vocabulary (1 token = 1 credit)."""
    call = request[CALL]
    call.route = "ai_generate"
    services = request.app[AI]
    try:
        principal = await calls.authorize(services, request, call.client_ip)
        row = await services.pool.fetchrow(
            "SELECT credits_posted, debits_posted, debits_pending FROM accounts WHERE user_id = $1",
            principal.user_id)
        purchased, used, held = (row["credits_posted"], row["debits_posted"], row["debits_pending"]) if row else (0, 0, 0)
        return web.Response(body=orjson.dumps({"user_id": principal.user_id, "balance": {
            "tokens_purchased": ledger.format_micro(purchased), "tokens_used": ledger.format_micro(used),
            "tokens_available": ledger.format_micro(purchased - used - held)}}), content_type="application/json")
    except HANDLED_FAILURES as error:
        return _as_provider_error("crm", request, error)


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(ai_ctx)
    app.router.add_route("*", "/openai/v1/" + TAIL, make_handler("openai", openai_spec))
    app.router.add_route("*", "/anthropic/" + TAIL, make_handler("anthropic", anthropic_spec))
    app.router.add_route("*", "/gemini/" + TAIL, make_handler("gemini", gemini_spec))
    app.router.add_post("/api/v1/generate", generate)
    app.router.add_get("/api/v1/balance", balance)
