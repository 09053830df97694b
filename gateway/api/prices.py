"""/api/v1/admin/prices: the model price table, in credits per million tokens (decimal strings).
The rules (which model names, providers and bounds) live in gateway/ai/price_table.py, shared with
the admin UI."""

from __future__ import annotations

from aiohttp import web

from gateway.ai import price_table
from gateway.ai.price_table import ModelPrice
from gateway.ai.resources import AI
from gateway.core.json_body import json_response, read_object
from gateway.core.app_keys import DATABASE
from gateway.core.middleware import CALL
from gateway.core.query_params import allow_only
from gateway.api.web_auth import require_admin
from ledger.money import format_micro


def price_json(price: ModelPrice) -> dict:
    return {"model": price.model, "provider": price.provider,
            "input_per_mtok": format_micro(price.price.input_per_mtok_micro),
            "output_per_mtok": format_micro(price.price.output_per_mtok_micro),
            "cached_input_per_mtok": format_micro(price.price.cached_input_per_mtok_micro),
            "max_output_tokens": price.max_output_tokens}


async def list_prices(request: web.Request) -> web.Response:
    request[CALL].route = "admin"
    await require_admin(request)
    allow_only(request)
    table = request.app[AI].prices
    await table.load()  # the admin sees what is stored, not this worker's last refresh
    return json_response({"items": [price_json(p) for p in table.prices.values()]})


async def put_price(request: web.Request) -> web.Response:
    """PUT /api/v1/admin/prices/{model} {input_per_mtok, output_per_mtok, cached_input_per_mtok}"""
    request[CALL].route = "admin"
    admin = await require_admin(request)
    table = request.app[AI].prices
    change = price_table.parse_change(request.match_info["model"], await read_object(request), table)
    saved = await price_table.save(request.app[DATABASE], table, change, actor_id=admin.id,
                                   ip=request[CALL].client_ip)
    return json_response(price_json(saved))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/admin/prices", list_prices)
    app.router.add_put("/api/v1/admin/prices/{model}", put_price)
