"""/api/v1/bundles: token bundles at a discount; public list, purchase, admin create/update/delete."""

from __future__ import annotations

import asyncpg
from aiohttp import web

import ledger
from gateway.accounts import audit
from gateway.accounts import purchases
from gateway.accounts import access_tokens
from gateway.core.config import Settings
from gateway.core.errors import BadRequest, NotFound
from gateway.core.json_body import database_id, field, json_response, read_object
from gateway.core.app_keys import DATABASE, SETTINGS
from gateway.core.middleware import CALL
from gateway.api.tokens import idempotency_key, purchase_json
from gateway.api.web_auth import current_user, now, require_admin

COLUMNS = "id, name, description, token_count, duration_hours, scope, price_micro, is_active, created_at"
SELECT_LISTED = f"SELECT {COLUMNS} FROM bundles WHERE deleted_at IS NULL AND is_active ORDER BY price_micro, id"
SELECT_ALL = f"SELECT {COLUMNS} FROM bundles WHERE deleted_at IS NULL ORDER BY price_micro, id"
SELECT_ONE = f"SELECT {COLUMNS} FROM bundles WHERE id = $1 AND deleted_at IS NULL"
INSERT = f"""
INSERT INTO bundles (name, description, token_count, duration_hours, scope, price_micro, is_active)
VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"""
UPDATE = f"""
UPDATE bundles SET name = $2, description = $3, token_count = $4, duration_hours = $5, scope = $6,
                   price_micro = $7, is_active = $8, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL RETURNING {COLUMNS}"""
SOFT_DELETE = """
UPDATE bundles SET deleted_at = now(), is_active = false WHERE id = $1 AND deleted_at IS NULL RETURNING id"""
FIELDS = ("name", "description", "token_count", "duration_hours", "scope", "price", "is_active")
TOKEN_COUNT_MAX, NAME_MAX, DESCRIPTION_MAX = 100, 100, 1000


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
    rows = await request.app[DATABASE].fetch(SELECT_LISTED)
    return json_response({"items": [bundle_json(r, request.app[SETTINGS]) for r in rows]})


async def _listed(request: web.Request) -> asyncpg.Record:
    bundle_id = database_id(request.match_info["bundle_id"])
    row = await request.app[DATABASE].fetchrow(SELECT_ONE, bundle_id) if bundle_id else None
    if row is None or not row["is_active"]:
        raise NotFound("no such bundle", code="bundle_not_found")
    return row


async def get_bundle(request: web.Request) -> web.Response:
    request[CALL].route = "bundles"
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
    return json_response({**purchase_json(bought), "bundle_id": bundle["id"]},
                         status=200 if bought.replayed else 201)


def _validated(body: dict, current: asyncpg.Record | None = None) -> list:
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}", code="unknown_field")
    required = current is None

    def pick(name: str, kind: type):
        return field(body, name, kind, required=required, default=current[name] if current else None)

    name = pick("name", str).strip()
    description = field(body, "description", str, required=False,
                        default=current["description"] if current is not None else "")
    count = pick("token_count", int)
    hours = pick("duration_hours", int)
    scope = field(body, "scope", str, required=False, default=current["scope"] if current is not None else "full")
    is_active = field(body, "is_active", bool, required=False,
                      default=current["is_active"] if current is not None else True)
    if "price" in body or required:
        try:
            price = ledger.parse_credits(field(body, "price", str))
        except ledger.MoneyError as error:
            raise BadRequest(str(error), code="invalid_amount") from error
    else:
        assert current is not None, "a new bundle requires its price"
        price = current["price_micro"]
    if not 0 < len(name) <= NAME_MAX or len(description) > DESCRIPTION_MAX:
        raise BadRequest(f"name: 1-{NAME_MAX} characters, description up to {DESCRIPTION_MAX}",
                         code="invalid_field")
    if not 1 <= count <= TOKEN_COUNT_MAX:
        raise BadRequest(f"token_count: 1-{TOKEN_COUNT_MAX}", code="invalid_field")
    if not 1 <= hours <= 24 * 366:
        raise BadRequest("duration_hours: 1-8784", code="invalid_field")
    if scope not in access_tokens.SCOPES:
        raise BadRequest(f"scope must be one of {', '.join(access_tokens.SCOPES)}", code="invalid_scope")
    if price <= 0:
        raise BadRequest("price must be positive", code="invalid_amount")
    return [name, description, count, hours, scope, price, is_active]


async def create_bundle(request: web.Request) -> web.Response:
    request[CALL].route = "admin"
    admin = await require_admin(request)
    values = _validated(await read_object(request))
    async with request.app[DATABASE].acquire() as connection, connection.transaction():
        row = await connection.fetchrow(INSERT, *values)
        await audit.record(connection, actor_id=admin.id, action="bundle.create", target_type="bundle",
                           target_id=row["id"], request=request, details={"price_micro": row["price_micro"]})
    return json_response(bundle_json(row, request.app[SETTINGS]), status=201)


async def update_bundle(request: web.Request) -> web.Response:
    request[CALL].route = "admin"
    admin = await require_admin(request)
    bundle_id = database_id(request.match_info["bundle_id"])
    body = await read_object(request)
    if not body:
        raise BadRequest("nothing to change", code="empty_patch")
    async with request.app[DATABASE].acquire() as connection, connection.transaction():
        current = await connection.fetchrow(SELECT_ONE + " FOR UPDATE", bundle_id) if bundle_id else None
        if current is None:
            raise NotFound("no such bundle", code="bundle_not_found")
        row = await connection.fetchrow(UPDATE, bundle_id, *_validated(body, current))
        await audit.record(connection, actor_id=admin.id, action="bundle.update", target_type="bundle",
                           target_id=bundle_id, request=request, details={"fields": sorted(body)})
    return json_response(bundle_json(row, request.app[SETTINGS]))


async def delete_bundle(request: web.Request) -> web.Response:
    """Soft delete: bought tokens keep their bundle; the bundle is no longer listed or sold."""
    request[CALL].route = "admin"
    admin = await require_admin(request)
    bundle_id = database_id(request.match_info["bundle_id"])
    async with request.app[DATABASE].acquire() as connection, connection.transaction():
        deleted = await connection.fetchval(SOFT_DELETE, bundle_id) if bundle_id else None
        if deleted is None:
            raise NotFound("no such bundle", code="bundle_not_found")
        await audit.record(connection, actor_id=admin.id, action="bundle.delete", target_type="bundle",
                           target_id=bundle_id, request=request)
    return json_response({"id": bundle_id, "deleted": True})


async def admin_list(request: web.Request) -> web.Response:
    request[CALL].route = "admin"
    await require_admin(request)
    rows = await request.app[DATABASE].fetch(SELECT_ALL)
    return json_response({"items": [bundle_json(r, request.app[SETTINGS]) for r in rows]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/bundles", list_bundles)
    app.router.add_get("/api/v1/bundles/{bundle_id}", get_bundle)
    app.router.add_post("/api/v1/bundles/{bundle_id}/purchase", purchase_bundle)
    app.router.add_get("/api/v1/admin/bundles", admin_list)
    app.router.add_post("/api/v1/admin/bundles", create_bundle)
    app.router.add_patch("/api/v1/admin/bundles/{bundle_id}", update_bundle)
    app.router.add_delete("/api/v1/admin/bundles/{bundle_id}", delete_bundle)
