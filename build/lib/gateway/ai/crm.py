"""The billing-CRM API on API keys: POST /api/v1/generate (a provider's body, the provider picked
from the model) and GET /api/v1/balance (credits in the CRM's token vocabulary, 1 token = 1 credit).
Refusals come in the CRM's own envelope: {"error": true, "code", "message", "request_id"}."""

from __future__ import annotations

import orjson
from aiohttp import web

import ledger
from gateway.ai import authentication, routes
from gateway.ai.handler import read_json, run
from gateway.ai.providers import provider_for_model
from gateway.ai.resources import AI
from gateway.core.app_keys import ERROR_SHAPE_PREFIXES
from gateway.core.errors import BadRequest
from gateway.core.middleware import CALL

GENERATE, BALANCE = "/api/v1/generate", "/api/v1/balance"


def generate_route(body: dict) -> tuple[routes.CallSpec, dict]:
    """The provider from the model name, the body in that provider's format."""
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
    call.route, call.error_shape = "ai_generate", "crm"
    ai = request.app[AI]
    call.principal = await authentication.authenticate(ai.keys, request)
    _, body = await read_json(request, ai.settings.ai_body_max_bytes)
    assert body is not None, "a POST route: read_json parsed its body"
    call.spec, upstream_body = generate_route(body)
    response = await run(ai, request, orjson.dumps(upstream_body), upstream_body)
    assert isinstance(response, web.Response), "generate refuses streams: the answer is whole"
    data = _json_or_text(response.body if isinstance(response.body, bytes) else b"")
    if response.status >= 400:
        return web.Response(body=orjson.dumps({
            "error": True, "code": "upstream_error", "data": data,
            "message": f"the {call.spec.provider} upstream answered {response.status}"}),
            status=response.status, content_type="application/json")
    balance = await ledger.balance(ai.pool, call.principal.user_id)
    used = call.usage.total if call.usage and call.charge else 0
    return web.Response(body=orjson.dumps({
        "error": False, "data": data,
        "usage": {"tokens_used": used, "balance_remaining": ledger.format_micro(balance.available_micro)}}),
        content_type="application/json")


def _json_or_text(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")


async def balance(request: web.Request) -> web.Response:
    """Purchased = all credits ever received, used = all credits spent, available = the balance
    less open holds (decimal strings)."""
    call = request[CALL]
    call.route, call.error_shape = "ai_balance", "crm"
    ai = request.app[AI]
    call.principal = await authentication.authenticate(ai.keys, request)
    totals = await ledger.totals(ai.pool, call.principal.user_id)
    return web.Response(body=orjson.dumps({"user_id": call.principal.user_id, "balance": {
        "tokens_purchased": ledger.format_micro(totals.received_micro),
        "tokens_used": ledger.format_micro(totals.spent_micro),
        "tokens_available": ledger.format_micro(totals.received_micro - totals.spent_micro - totals.held_micro)}}),
        content_type="application/json")


def add_routes(app: web.Application) -> None:
    app[ERROR_SHAPE_PREFIXES].extend([(GENERATE, "crm"), (BALANCE, "crm")])
    app.router.add_post(GENERATE, generate)
    app.router.add_get(BALANCE, balance)
