"""/api/v1/currency: balance and transactions; the admin's top-up / adjustment of a user's credits."""

from __future__ import annotations

from aiohttp import web

import ledger
from gateway.accounts.adjustments import adjust_credits, parse_adjustment
from gateway.accounts import users
from gateway.core.errors import BadRequest, NotFound
from gateway.core.json_body import database_id, json_response, read_object
from gateway.core.app_keys import DATABASE
from gateway.core.middleware import CALL
from gateway.core.query_params import allow_only, query_choice
from gateway.api.tokens import idempotency_key, page
from gateway.api.web_auth import current_user, now, require_admin

def balance_json(balance: ledger.Balance) -> dict:
    return {"balance": ledger.format_micro(balance.available_micro),
            "posted": ledger.format_micro(balance.posted_micro),
            "held": ledger.format_micro(balance.held_micro),
            "overdraft_limit": ledger.format_micro(balance.overdraft_micro),
            # What a refund could not take back (decision 0017): spending waits until money repays it.
            "owed": ledger.format_micro(balance.owed_micro), "currency": "credits"}


async def balance(request: web.Request) -> web.Response:
    request[CALL].route = "currency"
    user = await current_user(request)
    allow_only(request)
    return json_response(balance_json(await ledger.balance(request.app[DATABASE], user.id)))


async def transactions(request: web.Request) -> web.Response:
    request[CALL].route = "currency"
    user = await current_user(request)
    allow_only(request, "skip", "limit", "type", "transaction_type")
    skip, limit = page(request)
    # The seed's clients filter with transaction_type; tollgate's own with type (the same filter).
    kinds = {query_choice(request, name, ledger.KINDS) for name in ("type", "transaction_type")} - {None}
    if len(kinds) > 1:
        raise BadRequest("type and transaction_type name different types", code="invalid_query")
    kind = kinds.pop() if kinds else None
    database = request.app[DATABASE]
    account = (await ledger.balance(database, user.id)).account_id
    if account is None:
        return json_response({"items": [], "total": 0, "skip": skip, "limit": limit})
    items = await ledger.history.entries(database, account, kind=kind, limit=limit, skip=skip)
    total = await ledger.history.count(database, account, kind=kind)
    return json_response({"items": [{
        "id": e.id, "type": e.kind, "phase": e.phase, "amount": ledger.format_micro(e.signed_micro),
        "held": None if e.held_micro is None else ledger.format_micro(e.held_micro),
        "hold_id": e.hold_id, "description": e.description, "created_at": e.created_at.isoformat()}
        for e in items], "total": total, "skip": skip, "limit": limit})


async def admin_adjust(request: web.Request) -> web.Response:
    """POST /api/v1/admin/users/{id}/adjust {"credits": "-2.5", "reason": "..."}"""
    request[CALL].route = "admin"
    admin = await require_admin(request)
    key = idempotency_key(request)
    user_id = database_id(request.match_info["user_id"])
    database = request.app[DATABASE]
    user = await users.by_id(database, user_id) if user_id is not None else None
    if user is None:
        raise NotFound("no such user", code="user_not_found")
    amount, reason = parse_adjustment(await read_object(request))
    transfer = await adjust_credits(database, user_id=user.id, amount_micro=amount, reason=reason, key=key,
                                    actor_id=admin.id, now=now(request), ip=request[CALL].client_ip)
    after = await ledger.balance(database, user.id)
    return json_response({"transfer_id": transfer.id, "user_id": user.id, "replayed": transfer.replayed,
                          "credits": ledger.format_micro(amount), **balance_json(after)},
                         status=200 if transfer.replayed else 201)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/currency/balance", balance)
    app.router.add_get("/api/v1/currency/transactions", transactions)
    app.router.add_post("/api/v1/admin/users/{user_id}/adjust", admin_adjust)
