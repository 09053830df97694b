"""Admin JSON API over users: search, patch, their tokens, force revoke, stats, audit (managers scoped).

Admins see everyone. A manager sees only the clients assigned to them (role 'client' and
manager_id = the manager); any other id answers 404, exactly like an id that does not exist, so
a manager cannot probe which ids are taken.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import orjson
from aiohttp import web

import ledger
from gateway.accounts import audit
from gateway.accounts import users
from gateway.core.errors import BadRequest, Forbidden, NotFound
from gateway.core.json_body import database_id, json_response, read_object
from gateway.accounts.resources import CREDENTIAL_OUTBOX
from gateway.core.app_keys import DATABASE
from gateway.core.middleware import CALL
from gateway.core.query_params import (NUMBER, like_pattern, page, query_bool, query_choice, query_id,
                                  query_text)
from gateway.api.web_auth import now, require_admin, require_role

SEARCH_LENGTH_MAX = 200
TEXT_FILTER_LENGTH_MAX = 200
PERIODS = {"day": dt.timedelta(days=1), "week": dt.timedelta(days=7),
           "month": dt.timedelta(days=30), "all": None}
PATCHABLE = ("is_active", "role", "plan", "manager_id")
MANAGER_PATCHABLE = ("is_active", "plan")
# Plans a manager may give their clients; enterprise (no rate limit) needs an admin (decision 0014).
MANAGER_PLANS = ("free", "premium")

# $1 is the acting manager's id, NULL for an admin (who sees everyone).
SCOPE = "($1::bigint IS NULL OR (u.manager_id = $1 AND u.role = 'client'))"
# The same available balance as ledger.Balance.available_micro (posted minus held minus owed), in one join.
USER_COLUMNS = """
u.id, u.email, u.username, u.full_name, u.role, u.plan, u.is_active, u.manager_id, u.referral_code,
u.created_at, COALESCE(a.credits_posted - a.debits_posted - a.debits_pending - a.owed_micro, 0) AS available_micro"""
USER_FILTERS = SCOPE + r"""
  AND ($2::text IS NULL OR u.email ILIKE $2 ESCAPE '\' OR u.username ILIKE $2 ESCAPE '\'
       OR u.full_name ILIKE $2 ESCAPE '\')
  AND ($3::text IS NULL OR u.role = $3)
  AND ($4::text IS NULL OR u.plan = $4)
  AND ($5::boolean IS NULL OR u.is_active = $5)
  AND ($6::bigint IS NULL OR u.manager_id = $6)"""
COUNT_USERS = f"SELECT count(*) FROM users u WHERE {USER_FILTERS}"
SELECT_USERS = f"""
SELECT {USER_COLUMNS} FROM users u LEFT JOIN accounts a ON a.user_id = u.id
WHERE {USER_FILTERS}
ORDER BY u.id LIMIT $7 OFFSET $8"""
SELECT_USER = f"""
SELECT {USER_COLUMNS} FROM users u LEFT JOIN accounts a ON a.user_id = u.id
WHERE u.id = $2 AND {SCOPE}"""
LOCK_USER = f"""
SELECT u.id, u.role, u.plan, u.is_active, u.manager_id FROM users u
WHERE u.id = $2 AND {SCOPE} FOR UPDATE"""
# Held until commit, so the manager cannot be demoted or disabled while being assigned.
LOCK_MANAGER = "SELECT role, is_active FROM users WHERE id = $1 FOR SHARE"
UPDATE_USER = "UPDATE users SET is_active = $2, role = $3, plan = $4, manager_id = $5 WHERE id = $1"
TOKEN_FILTERS = "user_id = $1 AND (NOT $2::boolean OR (revoked_at IS NULL AND expires_at > $3))"
COUNT_TOKENS = f"SELECT count(*) FROM access_tokens WHERE {TOKEN_FILTERS}"
SELECT_TOKENS = f"""
SELECT id, scope, created_at, expires_at, revoked_at, duration_hours, price_micro, refund_micro
FROM access_tokens WHERE {TOKEN_FILTERS}
ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5"""
LOCK_TOKEN = f"""
SELECT t.id, t.user_id, t.token_hash, t.revoked_at FROM access_tokens t JOIN users u ON u.id = t.user_id
WHERE t.id = $2 AND {SCOPE} FOR UPDATE OF t"""
FORCE_REVOKE = "UPDATE access_tokens SET revoked_at = $2, revoked_by = $3 WHERE id = $1"

# $2: the period's start, NULL for all time.
USER_STATS = f"""
SELECT u.role, count(*) AS total, count(*) FILTER (WHERE u.is_active) AS active,
       count(*) FILTER (WHERE $2::timestamptz IS NULL OR u.created_at >= $2) AS new
FROM users u WHERE {SCOPE} GROUP BY u.role"""
ACTIVE_TOKENS = f"""
SELECT count(*) FROM access_tokens t JOIN users u ON u.id = t.user_id
WHERE {SCOPE} AND t.revoked_at IS NULL AND t.expires_at > $2"""
# Money that moved (posted transfers and posted holds), by kind and by which side is a user in scope.
CREDIT_STATS = """
WITH moves AS (
    SELECT t.kind, t.amount_micro,
           d.kind = 'user' AND ($1::bigint IS NULL OR (du.manager_id = $1 AND du.role = 'client')) AS from_user,
           c.kind = 'user' AND ($1::bigint IS NULL OR (cu.manager_id = $1 AND cu.role = 'client')) AS to_user
    FROM transfers t
    JOIN accounts d ON d.id = t.debit_account_id LEFT JOIN users du ON du.id = d.user_id
    JOIN accounts c ON c.id = t.credit_account_id LEFT JOIN users cu ON cu.id = c.user_id
    WHERE t.phase IN ('posted', 'post_pending') AND ($2::timestamptz IS NULL OR t.created_at >= $2)
)
SELECT
    COALESCE(sum(amount_micro) FILTER (WHERE kind = 'deposit' AND to_user), 0) AS sold,
    COALESCE(sum(amount_micro) FILTER (WHERE kind IN ('purchase', 'usage') AND from_user), 0) AS spent,
    COALESCE(sum(amount_micro) FILTER (WHERE kind = 'refund' AND to_user), 0) AS refunded,
    -- Bonuses net of their reversals (a reversal is a referral_bonus from the user back to promotions).
    COALESCE(sum(amount_micro) FILTER (WHERE kind = 'referral_bonus' AND to_user), 0)
      - COALESCE(sum(amount_micro) FILTER (WHERE kind = 'referral_bonus' AND from_user), 0) AS bonuses
FROM moves"""

AUDIT_FILTERS = """
($1::text IS NULL OR action = $1) AND ($2::bigint IS NULL OR actor_id = $2)
AND ($3::text IS NULL OR target_type = $3) AND ($4::text IS NULL OR target_id = $4)"""
COUNT_AUDIT = f"SELECT count(*) FROM audit_log WHERE {AUDIT_FILTERS}"
SELECT_AUDIT = f"""
SELECT id, actor_id, action, target_type, target_id, ip, details, created_at FROM audit_log
WHERE {AUDIT_FILTERS} ORDER BY id DESC LIMIT $5 OFFSET $6"""


# -- shared ----------------------------------------------------------------------------------

async def _staff(request: web.Request) -> tuple[users.User, int | None]:
    """The acting admin or manager, and the scope to apply: None for admins, the manager's id."""
    request[CALL].route = "admin"
    actor = await require_role(request, "admin", "manager")
    return actor, (actor.id if actor.role == "manager" else None)


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


def _user_not_found() -> NotFound:
    return NotFound("no such user", code="user_not_found")


# -- users -----------------------------------------------------------------------------------

async def list_users(request: web.Request) -> web.Response:
    """GET /api/v1/admin/users?search&role&plan&is_active&manager_id&skip&limit."""
    _, scope = await _staff(request)
    search = query_text(request, "search", SEARCH_LENGTH_MAX)
    filters = (scope, like_pattern(search) if search is not None else None,
               query_choice(request, "role", users.ROLES), query_choice(request, "plan", users.PLANS),
               query_bool(request, "is_active"), query_id(request, "manager_id"))
    skip, limit = page(request)
    database = request.app[DATABASE]
    total = await database.fetchval(COUNT_USERS, *filters)
    rows = await database.fetch(SELECT_USERS, *filters, limit, skip)
    return json_response({"items": [_user_item(row) for row in rows], "total": total,
                          "skip": skip, "limit": limit})


async def get_user(request: web.Request) -> web.Response:
    """GET /api/v1/admin/users/{id}."""
    _, scope = await _staff(request)
    user_id = _path_id(request, "user_id")
    row = await request.app[DATABASE].fetchrow(SELECT_USER, scope, user_id) if user_id else None
    if row is None:
        raise _user_not_found()
    return json_response(_user_item(row))


def _parse_patch(body: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(str(name)[:50] for name in body if name not in PATCHABLE)
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown[:5])}; allowed: {', '.join(PATCHABLE)}",
                         code="unknown_field")
    if not body:
        raise BadRequest(f"nothing to change; send one of {', '.join(PATCHABLE)}", code="empty_patch")
    if "is_active" in body and not isinstance(body["is_active"], bool):
        raise BadRequest("field 'is_active' must be true or false", code="invalid_field")
    for name, choices in (("role", users.ROLES), ("plan", users.PLANS)):
        if name in body and (not isinstance(body[name], str) or body[name] not in choices):
            raise BadRequest(f"field {name!r} must be one of {', '.join(choices)}", code="invalid_field")
    patch = dict(body)
    if "manager_id" in body and body["manager_id"] is not None:
        value = body["manager_id"]
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest("field 'manager_id' must be a user id or null", code="invalid_field")
        patch["manager_id"] = database_id(value)
        if patch["manager_id"] is None:
            raise BadRequest("manager_id names no user", code="invalid_manager")
    return patch


def _check_allowed(actor: users.User, user_id: int, patch: dict[str, Any]) -> None:
    if actor.role != "admin" and set(patch) - set(MANAGER_PATCHABLE):
        raise Forbidden("only an admin may change role or manager_id", code="admin_required")
    demotes = patch.get("role", "admin") != "admin"
    if actor.role == "admin" and actor.id == user_id and (patch.get("is_active") is False or demotes):
        raise BadRequest("an admin cannot deactivate or demote themselves", code="cannot_change_self")
    if patch.get("manager_id") == user_id:
        raise BadRequest("a user cannot be their own manager", code="invalid_manager")


async def _check_manager(connection: asyncpg.Connection, manager_id: int | None) -> None:
    if manager_id is None:
        return
    row = await connection.fetchrow(LOCK_MANAGER, manager_id)
    if row is None or row["role"] != "manager" or not row["is_active"]:
        raise BadRequest("manager_id must name an active manager", code="invalid_manager")


async def patch_user(request: web.Request) -> web.Response:
    """PATCH /api/v1/admin/users/{id} {is_active?, role?, manager_id?, plan?}: all or nothing."""
    actor, scope = await _staff(request)
    user_id = _path_id(request, "user_id")
    if user_id is None:
        raise _user_not_found()
    patch = _parse_patch(await read_object(request))
    _check_allowed(actor, user_id, patch)
    async with request.app[DATABASE].acquire() as connection, connection.transaction():
        current = await connection.fetchrow(LOCK_USER, scope, user_id)
        if current is None:
            raise _user_not_found()
        # Checked once the client is known to be theirs: anyone else's id stays a plain 404.
        if actor.role != "admin" and patch.get("plan", "free") not in MANAGER_PLANS:
            raise Forbidden(f"a manager may set plan {' or '.join(MANAGER_PLANS)}; "
                            f"{patch['plan']} needs an admin", code="admin_required")
        if "manager_id" in patch:
            await _check_manager(connection, patch["manager_id"])
        changes = {name: {"old": current[name], "new": value} for name, value in patch.items()
                   if current[name] != value}
        if changes:
            final = {name: patch.get(name, current[name]) for name in PATCHABLE}
            await connection.execute(UPDATE_USER, user_id, final["is_active"], final["role"],
                                     final["plan"], final["manager_id"])
            await audit.record(connection, actor_id=actor.id, action="user.update", target_type="user",
                               target_id=user_id, request=request, details={"changes": changes})
        row = await connection.fetchrow(SELECT_USER, scope, user_id)
    if "is_active" in changes or "plan" in changes:
        # The database queued the credentials' cache changes with the update (migration 0008):
        # push them now so the next proxied or AI request sees them on every gateway.
        await request.app[CREDENTIAL_OUTBOX].push_from(request.app[DATABASE])
    return json_response(_user_item(row))


# -- tokens ----------------------------------------------------------------------------------

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
    active_only = bool(query_bool(request, "active_only"))
    skip, limit = page(request)
    database = request.app[DATABASE]
    if user_id is None or await database.fetchrow(SELECT_USER, scope, user_id) is None:
        raise _user_not_found()
    at = now(request)
    total = await database.fetchval(COUNT_TOKENS, user_id, active_only, at)
    rows = await database.fetch(SELECT_TOKENS, user_id, active_only, at, limit, skip)
    return json_response({"items": [_token_item(row, at) for row in rows], "total": total,
                          "skip": skip, "limit": limit})


async def force_revoke_token(request: web.Request) -> web.Response:
    """POST /api/v1/admin/tokens/{id}/revoke: revoked at once, without a refund."""
    actor, scope = await _staff(request)
    token_id = _path_id(request, "token_id")
    if token_id is None:
        raise NotFound("no such token", code="token_not_found")
    at = now(request)
    async with request.app[DATABASE].acquire() as connection, connection.transaction():
        token = await connection.fetchrow(LOCK_TOKEN, scope, token_id)
        if token is None:
            raise NotFound("no such token", code="token_not_found")
        already_revoked = token["revoked_at"] is not None
        if not already_revoked:
            await connection.execute(FORCE_REVOKE, token_id, at, actor.id)
            await audit.record(connection, actor_id=actor.id, action="token.force_revoke",
                               target_type="access_token", target_id=token_id, request=request,
                               details={"user_id": token["user_id"], "refund_micro": None})
    # Rewritten even when already revoked: the tombstone may have expired from the cache.
    # The revocation queued its cache refusal with it (decision 0015): push it to Redis now.
    await request.app[CREDENTIAL_OUTBOX].push_from(request.app[DATABASE])
    return json_response({"id": token_id, "revoked": True, "already_revoked": already_revoked,
                          "revoked_at": _iso(token["revoked_at"] if already_revoked else at)})


# -- stats and audit -------------------------------------------------------------------------

async def stats(request: web.Request) -> web.Response:
    """GET /api/v1/admin/stats?period=day|week|month|all: a manager's numbers cover their clients."""
    _, scope = await _staff(request)
    period = query_choice(request, "period", tuple(PERIODS)) or "all"
    at = now(request)
    span = PERIODS[period]
    since = at - span if span is not None else None
    database = request.app[DATABASE]
    by_role = {role: {"total": 0, "active": 0, "new": 0} for role in users.ROLES}
    for row in await database.fetch(USER_STATS, scope, since):
        by_role[row["role"]] = {"total": row["total"], "active": row["active"], "new": row["new"]}
    active_tokens = await database.fetchval(ACTIVE_TOKENS, scope, at)
    credits = await database.fetchrow(CREDIT_STATS, scope, since)
    return json_response({
        "period": period,
        "since": _iso(since),
        "users": {"total": sum(r["total"] for r in by_role.values()),
                  "active": sum(r["active"] for r in by_role.values()),
                  "new": sum(r["new"] for r in by_role.values()),
                  "by_role": {role: r["total"] for role, r in by_role.items()}},
        "active_tokens": active_tokens,
        "credits": {name: ledger.format_micro(int(credits[name]))
                    for name in ("sold", "spent", "refunded", "bonuses")},
    })


def _audit_item(row: asyncpg.Record) -> dict[str, Any]:
    details = row["details"]
    return {"id": row["id"], "actor_id": row["actor_id"], "action": row["action"],
            "target_type": row["target_type"], "target_id": row["target_id"], "ip": row["ip"],
            "details": orjson.loads(details) if isinstance(details, str) else details,
            "created_at": _iso(row["created_at"])}


async def audit_log(request: web.Request) -> web.Response:
    """GET /api/v1/admin/audit?action&actor_id&target_type&target_id&skip&limit: admins only."""
    request[CALL].route = "admin"
    await require_admin(request)
    filters = (query_text(request, "action", TEXT_FILTER_LENGTH_MAX), query_id(request, "actor_id"),
               query_text(request, "target_type", TEXT_FILTER_LENGTH_MAX),
               query_text(request, "target_id", TEXT_FILTER_LENGTH_MAX))
    skip, limit = page(request)
    database = request.app[DATABASE]
    total = await database.fetchval(COUNT_AUDIT, *filters)
    rows = await database.fetch(SELECT_AUDIT, *filters, limit, skip)
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
