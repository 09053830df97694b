"""/api/v1/admin/prices: the model price table, in credits per million tokens (decimal strings)."""

from __future__ import annotations

import re

from aiohttp import web

from gateway.accounts import audit
from gateway.ai.price_table import UPSERT, ModelPrice, model_price
from gateway.ai.resources import AI
from gateway.ai.providers import PROVIDERS, provider_for_model
from gateway.core.errors import BadRequest
from gateway.core.json_body import field, json_response, read_object
from gateway.core.app_keys import DATABASE
from gateway.core.middleware import CALL
from gateway.api.web_auth import require_admin
from ledger.money import MoneyError, format_micro, parse_credits

MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")
FIELDS = ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok", "provider", "max_output_tokens")
OUTPUT_TOKENS_MAX = 10_000_000


def price_json(price: ModelPrice) -> dict:
    return {"model": price.model, "provider": price.provider,
            "input_per_mtok": format_micro(price.price.input_per_mtok_micro),
            "output_per_mtok": format_micro(price.price.output_per_mtok_micro),
            "cached_input_per_mtok": format_micro(price.price.cached_input_per_mtok_micro),
            "max_output_tokens": price.max_output_tokens}


async def list_prices(request: web.Request) -> web.Response:
    request[CALL].route = "admin"
    await require_admin(request)
    table = request.app[AI].prices
    await table.load()  # the admin sees what is stored, not this worker's last refresh
    return json_response({"items": [price_json(p) for p in table.prices.values()]})


def _credits(body: dict, name: str) -> int:
    try:
        return parse_credits(field(body, name, str))
    except MoneyError as error:
        raise BadRequest(f"{name}: {error}", code="invalid_amount") from error


async def put_price(request: web.Request) -> web.Response:
    """PUT /api/v1/admin/prices/{model} {input_per_mtok, output_per_mtok, cached_input_per_mtok}"""
    request[CALL].route = "admin"
    admin = await require_admin(request)
    model = request.match_info["model"]
    if not MODEL.match(model):
        raise BadRequest("model: letters, digits, '.', '_', ':', '-' (up to 200)", code="invalid_model")
    body = await read_object(request)
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}", code="unknown_field")
    prices = [_credits(body, name) for name in FIELDS[:3]]
    provider = field(body, "provider", str, required=False) or provider_for_model(model)
    if provider not in PROVIDERS:
        raise BadRequest(f"provider: one of {', '.join(PROVIDERS)} (not implied by the model name)",
                         code="invalid_provider")
    table = request.app[AI].prices
    current = table.prices.get(model)
    max_output = field(body, "max_output_tokens", int, required=False,
                       default=current.max_output_tokens if current else table.default_max_output)
    if not 1 <= max_output <= OUTPUT_TOKENS_MAX:
        raise BadRequest(f"max_output_tokens: 1 to {OUTPUT_TOKENS_MAX}", code="invalid_field")
    async with request.app[DATABASE].acquire() as connection, connection.transaction():
        row = await connection.fetchrow(UPSERT, model, provider, *prices, max_output, admin.id)
        await audit.record(connection, actor_id=admin.id, action="price.update", target_type="model",
                           target_id=model, request=request,
                           details={"per_mtok_micro": prices, "provider": provider})
    saved = model_price(row)
    table.put(saved)  # this worker at once; the others at their next refresh
    return json_response(price_json(saved))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/admin/prices", list_prices)
    app.router.add_put("/api/v1/admin/prices/{model}", put_price)
