"""/api/v1/tokens: buy access tokens with credits, list them, revoke one for a pro-rata refund."""

from __future__ import annotations

import re
import uuid

from aiohttp import web

import ledger
from gateway.accounts import purchases
from gateway.accounts import refunds
from gateway.accounts import access_tokens
from gateway.core.errors import BadRequest, NotFound
from gateway.core.json_body import database_id, field, json_response, read_object
from gateway.accounts.resources import CREDENTIAL_OUTBOX
from gateway.core.app_keys import DATABASE, SETTINGS
from gateway.core.middleware import CALL
from gateway.core.query_params import allow_only, query_int
from gateway.api.web_auth import current_user, now

IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
SELECT_MINE = """
SELECT id, scope, created_at, expires_at, revoked_at, duration_hours, price_micro, refund_micro, bundle_id
FROM access_tokens WHERE user_id = $1 AND ($2::timestamptz IS NULL OR (revoked_at IS NULL AND expires_at > $2))
ORDER BY id DESC LIMIT $3 OFFSET $4"""
PAGE_MAX, SKIP_MAX = 200, 10**9


def idempotency_key(request: web.Request) -> str:
    """The client's Idempotency-Key header, or a fresh key (then every request is a new purchase)."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return "auto:" + uuid.uuid4().hex
    if not IDEMPOTENCY_KEY.match(key):
        raise BadRequest("Idempotency-Key: 1-100 characters of A-Z a-z 0-9 . _ : -",
                         code="invalid_idempotency_key")
    return "client:" + key


def purchase_json(purchase: purchases.Purchase, balance: ledger.Balance) -> dict:
    """The purchase with the balance it left (what may still be spent, as /currency/balance says)."""
    return {"transfer_id": purchase.transfer_id, "price": ledger.format_micro(purchase.price_micro),
            "replayed": purchase.replayed, "new_balance": ledger.format_micro(balance.available_micro),
            "tokens": [{"id": t.id, "token": t.token, "scope": t.scope,
                        "expires_at": t.expires_at.isoformat()} for t in purchase.tokens]}


def page(request: web.Request) -> tuple[int, int]:
    """(skip, limit) of the user's lists: skip 0..10^9, limit 1..PAGE_MAX (default 50)."""
    return (query_int(request, "skip", 0, 0, SKIP_MAX), query_int(request, "limit", 50, 1, PAGE_MAX))


def flag(request: web.Request, name: str, default: bool = False) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw.lower() not in ("true", "false", "1", "0"):
        raise BadRequest(f"{name} must be true or false", code="invalid_query")
    return raw.lower() in ("true", "1")


async def purchase(request: web.Request) -> web.Response:
    """POST /api/v1/tokens/purchase {duration_hours, scope}: the token is in this answer only."""
    request[CALL].route = "tokens"
    user = await current_user(request)
    key = idempotency_key(request)
    body = await read_object(request)
    settings = request.app[SETTINGS]
    hours = field(body, "duration_hours", int)
    if hours not in settings.token_prices:
        allowed = ", ".join(str(h) for h in sorted(settings.token_prices))
        raise BadRequest(f"duration_hours must be one of {allowed}", code="invalid_duration")
    scope = field(body, "scope", str, required=False, default="full")
    if scope not in access_tokens.SCOPES:
        raise BadRequest(f"scope must be one of {', '.join(access_tokens.SCOPES)}", code="invalid_scope")
    bought = await purchases.buy_tokens(
        request.app[DATABASE], settings, user_id=user.id, key=key, duration_hours=hours, scope=scope,
        price_micro=settings.token_prices[hours], now=now(request), ip=request[CALL].client_ip)
    balance = await ledger.balance(request.app[DATABASE], user.id)
    return json_response(purchase_json(bought, balance), status=200 if bought.replayed else 201)


async def my_tokens(request: web.Request) -> web.Response:
    request[CALL].route = "tokens"
    user = await current_user(request)
    allow_only(request, "active_only", "skip", "limit")
    skip, limit = page(request)
    # Usable tokens only unless asked for all (active_only=false), as the seed's clients expect.
    active_at = now(request) if flag(request, "active_only", default=True) else None
    rows = await request.app[DATABASE].fetch(SELECT_MINE, user.id, active_at, limit, skip)
    when = now(request)
    return json_response({"items": [{
        "id": r["id"], "scope": r["scope"], "created_at": r["created_at"].isoformat(),
        "expires_at": r["expires_at"].isoformat(),
        "revoked_at": r["revoked_at"].isoformat() if r["revoked_at"] else None,
        "active": r["revoked_at"] is None and r["expires_at"] > when,
        "duration_hours": r["duration_hours"], "price": ledger.format_micro(r["price_micro"]),
        "refund": None if r["refund_micro"] is None else ledger.format_micro(r["refund_micro"]),
        "bundle_id": r["bundle_id"]} for r in rows], "skip": skip, "limit": limit})


async def revoke(request: web.Request) -> web.Response:
    """DELETE /api/v1/tokens/{id}: the refund rule is refunds.refund_micro; another user's token is a
    404, like one that does not exist."""
    request[CALL].route = "tokens"
    user = await current_user(request)
    token_id = database_id(request.match_info["token_id"])
    if token_id is None:
        raise NotFound("no such token", code="token_not_found")
    revoked = await refunds.revoke_with_refund(request.app[DATABASE], request.app[SETTINGS], user_id=user.id,
                                                 token_id=token_id, now=now(request), ip=request[CALL].client_ip)
    # The revocation queued its cache refusal with it (decision 0015): push it to Redis now.
    await request.app[CREDENTIAL_OUTBOX].push_from(request.app[DATABASE])
    return json_response({"id": revoked.token_id, "revoked": True,
                          "refund": ledger.format_micro(revoked.refund_micro),
                          "refund_transfer_id": revoked.refund_transfer_id})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/tokens/purchase", purchase)
    app.router.add_get("/api/v1/tokens/my-tokens", my_tokens)
    app.router.add_delete("/api/v1/tokens/{token_id}", revoke)
