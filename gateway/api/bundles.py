"""/api/v1/bundles: token bundles at a discount; public list, purchase, admin create/update/delete."""

from __future__ import annotations

import asyncpg
from aiohttp import web

import ledger
from gateway.accounts import bundles
from gateway.accounts import purchases
from gateway.core.config import Settings
from gateway.core.errors import NotFound
from gateway.core.json_body import database_id, json_response, read_object
from gateway.core.app_keys import DATABASE, SETTINGS
from gateway.core.middleware import CALL
from gateway.core.query_params import allow_only
from gateway.api.tokens import idempotency_key, purchase_json
from gateway.api.web_auth import current_user, now, require_admin

def bundle_json(row: asyncpg.Record, settings: Settings) -> dict:
    """With what the same tokens cost one by one, when that duration is sold singly."""
    count, price = row["token_count"], row["price_micro"]
    single = settings.token_prices.get(row["duration_hours"])
    full = single * count if single else None
    return {"id": row["id"], "name": row["name"], "description": row["description"],
            "token_count": count, "duration_hours": row["duration_hours"], "scope": row["scope"],
            "price": ledger.format_micro(price), "price_per_token": ledger.format_micro(price // count),
            "regular_price": ledger.format_micro(full) if full else None,
            "savings": ledger.format_micro(full - price) if full else None,
            "savings_percent": round((full - price) * 100 / full, 2) if full else None,
            "is_active": row["is_active"]}


async def list_bundles(request: web.Request) -> web.Response:
    request[CALL].route = "bundles"
    allow_only(request)
    rows = await bundles.listed(request.app[DATABASE])
    return json_response({"items": [bundle_json(r, request.app[SETTINGS]) for r in rows]})


async def _listed(request: web.Request) -> asyncpg.Record:
    bundle_id = database_id(request.match_info["bundle_id"])
    row = await bundles.one(request.app[DATABASE], bundle_id)
    if row is None or not row["is_active"]:
        raise NotFound("no such bundle", code="bundle_not_found")
    return row


async def get_bundle(request: web.Request) -> web.Response:
    request[CALL].route = "bundles"
    allow_only(request)
    return json_response(bundle_json(await _listed(request), request.app[SETTINGS]))


async def purchase_bundle(request: web.Request) -> web.Response:
    request[CALL].route = "bundles"
    user = await current_user(request)
    key = idempotency_key(request)
    bundle = await _listed(request)
    bought = await purchases.buy_tokens(
        request.app[DATABASE], request.app[SETTINGS], user_id=user.id, key=key,
        duration_hours=bundle["duration_hours"], scope=bundle["scope"], price_micro=bundle["price_micro"],
        count=bundle["token_count"], bundle_id=bundle["id"], now=now(request), ip=request[CALL].client_ip)
    balance = await ledger.balance(request.app[DATABASE], user.id)
    return json_response({**purchase_json(bought, balance), "bundle_id": bundle["id"]},
                         status=200 if bought.replayed else 201)


async def create_bundle(request: web.Request) -> web.Response:
    request[CALL].route = "admin"
    admin = await require_admin(request)
    row = await bundles.create(request.app[DATABASE], await read_object(request), actor_id=admin.id,
                               ip=request[CALL].client_ip)
    return json_response(bundle_json(row, request.app[SETTINGS]), status=201)


async def update_bundle(request: web.Request) -> web.Response:
    request[CALL].route = "admin"
    admin = await require_admin(request)
    bundle_id = database_id(request.match_info["bundle_id"])
    row = await bundles.update(request.app[DATABASE], bundle_id, await read_object(request), actor_id=admin.id,
                               ip=request[CALL].client_ip)
    return json_response(bundle_json(row, request.app[SETTINGS]))


async def delete_bundle(request: web.Request) -> web.Response:
    """Soft delete: bought tokens keep their bundle; the bundle is no longer listed or sold."""
    request[CALL].route = "admin"
    admin = await require_admin(request)
    bundle_id = database_id(request.match_info["bundle_id"])
    await bundles.delete(request.app[DATABASE], bundle_id, actor_id=admin.id, ip=request[CALL].client_ip)
    return json_response({"id": bundle_id, "deleted": True})


async def admin_list(request: web.Request) -> web.Response:
    request[CALL].route = "admin"
    await require_admin(request)
    allow_only(request)
    rows = await bundles.every(request.app[DATABASE])
    return json_response({"items": [bundle_json(r, request.app[SETTINGS]) for r in rows]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/bundles", list_bundles)
    app.router.add_get("/api/v1/bundles/{bundle_id}", get_bundle)
    app.router.add_post("/api/v1/bundles/{bundle_id}/purchase", purchase_bundle)
    app.router.add_get("/api/v1/admin/bundles", admin_list)
    app.router.add_post("/api/v1/admin/bundles", create_bundle)
    app.router.add_patch("/api/v1/admin/bundles/{bundle_id}", update_bundle)
    app.router.add_delete("/api/v1/admin/bundles/{bundle_id}", delete_bundle)
