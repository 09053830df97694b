"""Admin JSON API over users: search, patch, their tokens, force revoke, stats, audit (managers scoped).

The rules (the manager scope, who may change what) live in gateway/accounts (directory,
user_credentials, statistics, audit), which the admin UI reads through too.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
from aiohttp import web

import ledger
from gateway.accounts import audit, directory, statistics, user_credentials, users
from gateway.accounts.resources import CREDENTIAL_OUTBOX
from gateway.core.app_keys import DATABASE
from gateway.core.json_body import database_id, json_response, read_object
from gateway.core.middleware import CALL
from gateway.core.query_params import (allow_only, NUMBER, page, query_bool, query_choice, query_id, query_text)
from gateway.api.web_auth import now, require_admin, require_role

SEARCH_LENGTH_MAX = 200
TEXT_FILTER_LENGTH_MAX = 200
PERIODS = {"day": 1, "week": 7, "month": 30, "all": None}


async def _staff(request: web.Request) -> tuple[users.User, int | None]:
    """The acting admin or manager, and the scope to apply: None for admins, the manager's id."""
    request[CALL].route = "admin"
    actor = await require_role(request, "admin", "manager")
    return actor, directory.scope_of(actor)


def _path_id(request: web.Request, name: str) -> int | None:
    raw = request.match_info[name]
    return database_id(raw) if NUMBER.match(raw) else None


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _user_item(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": row["id"], "email": row["email"], "username": row["username"],
            "full_name": row["full_name"], "role": row["role"], "plan": row["plan"],
            "is_active": row["is_active"], "manager_id": row["manager_id"],
            "referral_code": row["referral_code"], "created_at": _iso(row["created_at"]),
            "balance": ledger.format_micro(row["available_micro"])}


async def list_users(request: web.Request) -> web.Response:
    """GET /api/v1/admin/users?search&role&plan&is_active&manager_id&skip&limit."""
    _, scope = await _staff(request)
    allow_only(request, "search", "role", "plan", "is_active", "manager_id", "skip", "limit")
    filters = directory.UserFilters(
        query_text(request, "search", SEARCH_LENGTH_MAX), query_choice(request, "role", users.ROLES),
        query_choice(request, "plan", users.PLANS), query_bool(request, "is_active"),
        query_id(request, "manager_id"))
    skip, limit = page(request)
    database = request.app[DATABASE]
    total = await directory.count_users(database, scope, filters)
    rows = await directory.find_users(database, scope, filters, limit=limit, skip=skip)
    return json_response({"items": [_user_item(row) for row in rows], "total": total,
                          "skip": skip, "limit": limit})


async def get_user(request: web.Request) -> web.Response:
    """GET /api/v1/admin/users/{id}."""
    _, scope = await _staff(request)
    allow_only(request)
    return json_response(_user_item(await directory.get_user(request.app[DATABASE], scope,
                                                             _path_id(request, "user_id"))))


async def patch_user(request: web.Request) -> web.Response:
    """PATCH /api/v1/admin/users/{id} {is_active?, role?, manager_id?, plan?}: all or nothing."""
    actor, _ = await _staff(request)
    user_id = _path_id(request, "user_id")
    if user_id is None:
        raise directory.user_not_found()
    patch = directory.parse_patch(await read_object(request))
    row = await directory.update_user(request.app[DATABASE], request.app[CREDENTIAL_OUTBOX], actor=actor,
                                      user_id=user_id, patch=patch, ip=request[CALL].client_ip)
    return json_response(_user_item(row))


def _token_item(row: asyncpg.Record, at: dt.datetime) -> dict[str, Any]:
    refund = row["refund_micro"]
    return {"id": row["id"], "scope": row["scope"], "created_at": _iso(row["created_at"]),
            "expires_at": _iso(row["expires_at"]), "revoked_at": _iso(row["revoked_at"]),
            "duration_hours": row["duration_hours"], "price": ledger.format_micro(row["price_micro"]),
            "refund": None if refund is None else ledger.format_micro(refund),
            "active": row["revoked_at"] is None and row["expires_at"] > at}


async def list_tokens(request: web.Request) -> web.Response:
    """GET /api/v1/admin/users/{id}/tokens?active_only=false&skip&limit: never the hash."""
    _, scope = await _staff(request)
    user_id = _path_id(request, "user_id")
    allow_only(request, "active_only", "skip", "limit")
    active_only = bool(query_bool(request, "active_only"))
    skip, limit = page(request)
    database = request.app[DATABASE]
    user = await directory.get_user(database, scope, user_id)
    at = now(request)
    total = await user_credentials.count_tokens(database, user["id"], active_only=active_only, at=at)
    rows = await user_credentials.tokens(database, user["id"], active_only=active_only, at=at, limit=limit,
                                         skip=skip)
    return json_response({"items": [_token_item(row, at) for row in rows], "total": total,
                          "skip": skip, "limit": limit})


async def force_revoke_token(request: web.Request) -> web.Response:
    """POST /api/v1/admin/tokens/{id}/revoke: revoked at once, without a refund."""
    actor, _ = await _staff(request)
    revoked = await user_credentials.force_revoke_token(
        request.app[DATABASE], request.app[CREDENTIAL_OUTBOX], actor=actor,
        token_id=_path_id(request, "token_id"), at=now(request), ip=request[CALL].client_ip)
    return json_response({"id": revoked.token_id, "revoked": True, "already_revoked": revoked.already_revoked,
                          "revoked_at": _iso(revoked.revoked_at)})


async def stats(request: web.Request) -> web.Response:
    """GET /api/v1/admin/stats?period=day|week|month|all: a manager's numbers cover their clients."""
    _, scope = await _staff(request)
    allow_only(request, "period")
    period = query_choice(request, "period", tuple(PERIODS)) or "all"
    at = now(request)
    days = PERIODS[period]
    since = at - dt.timedelta(days=days) if days is not None else None
    database = request.app[DATABASE]
    by_role = await statistics.users_by_role(database, scope, since)
    (credits,) = await statistics.credits(database, scope, [since])
    return json_response({
        "period": period,
        "since": _iso(since),
        "users": {"total": sum(r["total"] for r in by_role.values()),
                  "active": sum(r["active"] for r in by_role.values()),
                  "new": sum(r["new"] for r in by_role.values()),
                  "by_role": {role: r["total"] for role, r in by_role.items()}},
        "active_tokens": await statistics.active_tokens(database, scope, at),
        "credits": {"sold": ledger.format_micro(credits.sold_micro),
                    "spent": ledger.format_micro(credits.spent_micro),
                    "refunded": ledger.format_micro(credits.refunded_micro),
                    "bonuses": ledger.format_micro(credits.bonuses_micro)},
    })


def _audit_item(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": row["id"], "actor_id": row["actor_id"], "action": row["action"],
            "target_type": row["target_type"], "target_id": row["target_id"], "ip": row["ip"],
            "details": audit.details_of(row), "created_at": _iso(row["created_at"])}


async def audit_log(request: web.Request) -> web.Response:
    """GET /api/v1/admin/audit?action&actor_id&target_type&target_id&skip&limit: admins only."""
    request[CALL].route = "admin"
    await require_admin(request)
    allow_only(request, "action", "actor_id", "target_type", "target_id", "skip", "limit")
    filters = audit.Filters(query_text(request, "action", TEXT_FILTER_LENGTH_MAX), query_id(request, "actor_id"),
                            query_text(request, "target_type", TEXT_FILTER_LENGTH_MAX),
                            query_text(request, "target_id", TEXT_FILTER_LENGTH_MAX))
    skip, limit = page(request)
    database = request.app[DATABASE]
    total = await audit.count(database, filters)
    rows = await audit.entries(database, filters, limit=limit, skip=skip)
    return json_response({"items": [_audit_item(row) for row in rows], "total": total,
                          "skip": skip, "limit": limit})


def add_routes(app: web.Application) -> None:
    """Registered by gateway.app.create_app."""
    app.router.add_get("/api/v1/admin/users", list_users)
    app.router.add_get("/api/v1/admin/users/{user_id}", get_user)
    app.router.add_patch("/api/v1/admin/users/{user_id}", patch_user)
    app.router.add_get("/api/v1/admin/users/{user_id}/tokens", list_tokens)
    app.router.add_post("/api/v1/admin/tokens/{token_id}/revoke", force_revoke_token)
    app.router.add_get("/api/v1/admin/stats", stats)
    app.router.add_get("/api/v1/admin/audit", audit_log)
