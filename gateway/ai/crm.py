"""The billing-CRM API on API keys: POST /api/v1/generate (a provider's body, or the spec's simple
{"model", "prompt", "max_tokens"?}; the provider picked from the model) and GET /api/v1/balance.
Amounts are integers in the spec's "tokens": 1 token = 1 micro-credit (1,000,000 per credit), so
balance_remaining == the previous balance - tokens_used holds exactly; the provider's own token
counts come as separate fields. Refusals come in the CRM's own envelope:
{"error": true, "code", "message", "request_id"}."""

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


# The spec's simple form names no provider format; an Anthropic call needs an output bound.
PROMPT_OUTPUT_DEFAULT = 1024


def from_prompt(provider: str, body: dict) -> dict:
    """{"model", "prompt", "max_tokens"?} in the provider's own format; any other body as it is."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or any(name in body for name in ("messages", "contents", "input")):
        return body
    rest = {name: value for name, value in body.items() if name not in ("prompt", "max_tokens")}
    limit = body.get("max_tokens")
    if provider == "gemini":
        config = {"maxOutputTokens": limit} if limit is not None else {}
        return {**rest, "contents": [{"role": "user", "parts": [{"text": prompt}]}],
                **({"generationConfig": config} if config else {})}
    if provider == "anthropic" and limit is None:
        limit = PROMPT_OUTPUT_DEFAULT
    return {**rest, "messages": [{"role": "user", "content": prompt}],
            **({"max_tokens": limit} if limit is not None else {})}


def generate_route(body: dict) -> tuple[routes.CallSpec, dict]:
    """The provider from the model name, the body in that provider's format."""
    model = body.get("model")
    if not isinstance(model, str) or not routes.MODEL.match(model):
        raise BadRequest("model: a model name is required", code="invalid_model")
    if body.get("stream") is True:
        raise BadRequest("/api/v1/generate answers whole responses; use the provider routes to stream",
                         code="stream_not_supported")
    provider = provider_for_model(model)
    body = from_prompt(provider or "", body)
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
    usage = call.usage if call.usage and call.charge else None
    return web.Response(body=orjson.dumps({
        "error": False, "data": data,
        "usage": {"tokens_used": call.charged_micro, "balance_remaining": balance.available_micro,
                  # The provider's own counts, apart from the spec's tokens (which are credits).
                  "input_tokens": usage.input_tokens if usage else 0,
                  "cached_input_tokens": usage.cached_input_tokens if usage else 0,
                  "output_tokens": usage.output_tokens if usage else 0,
                  "total_tokens": usage.total if usage else 0,
                  "model": call.spec.model, "provider": call.spec.provider}}),
        content_type="application/json")


def _json_or_text(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")


async def balance(request: web.Request) -> web.Response:
    """Purchased = all credits ever received, used = all credits spent, available = what may be
    spent now (the balance less open holds and debts): integers, 1 token = 1 micro-credit."""
    call = request[CALL]
    call.route, call.error_shape = "ai_balance", "crm"
    ai = request.app[AI]
    call.principal = await authentication.authenticate(ai.keys, request)
    totals = await ledger.totals(ai.pool, call.principal.user_id)
    available = (await ledger.balance(ai.pool, call.principal.user_id)).available_micro
    return web.Response(body=orjson.dumps({"user_id": call.principal.user_id, "balance": {
        "tokens_purchased": totals.received_micro, "tokens_used": totals.spent_micro,
        "tokens_available": available, "tokens_held": totals.held_micro}}),
        content_type="application/json")


def add_routes(app: web.Application) -> None:
    app[ERROR_SHAPE_PREFIXES].extend([(GENERATE, "crm"), (BALANCE, "crm")])
    app.router.add_post(GENERATE, generate)
    app.router.add_get(BALANCE, balance)
