"""Budgets over the JSON API: a user reads their own (GET /api/v1/users/me/budget); staff set or
remove a user's (PUT/DELETE /api/v1/admin/users/{id}/budget; managers for their clients only). A key's
budget is set on the key itself (/api/v1/keys)."""

from __future__ import annotations

from aiohttp import web

from gateway.accounts import audit, budgets, directory
from gateway.api.web_auth import current_user, now, require_role
from gateway.core.app_keys import DATABASE
from gateway.core.errors import BadRequest
from gateway.core.json_body import database_id, json_response, read_object
from gateway.core.middleware import CALL
from gateway.core.query_params import allow_only, NUMBER


async def my_budget(request: web.Request) -> web.Response:
    request[CALL].route = "users"
    user = await current_user(request)
    allow_only(request)
    row = await budgets.of_user(request.app[DATABASE], user.id, now(request))
    return json_response({"user_id": user.id, "budget": budgets.budget_json(row)})


async def _staff_target(request: web.Request) -> tuple[int, int]:
    """(actor id, user id) for a user in the actor's scope; 404 otherwise."""
    request[CALL].route = "admin"
    actor = await require_role(request, "admin", "manager")
    raw = request.match_info["user_id"]
    user = await directory.get_user(request.app[DATABASE], directory.scope_of(actor),
                                    database_id(raw) if NUMBER.match(raw) else None)
    return actor.id, user["id"]


async def _put(request: web.Request, spec: budgets.BudgetSpec | None) -> web.Response:
    actor_id, user_id = await _staff_target(request)
    when = now(request)
    async with request.app[DATABASE].acquire() as connection, connection.transaction():
        await budgets.put(connection, user_id=user_id, key_id=None, spec=spec, now=when)
        await audit.record(connection, actor_id=actor_id, action="budget.set" if spec else "budget.remove",
                           target_type="user", target_id=user_id, request=request,
                           details={"user_id": user_id, "limit_micro": spec.limit_micro if spec else None,
                                    "period": spec.period if spec else None})
    row = await budgets.of_user(request.app[DATABASE], user_id, when)
    return json_response({"user_id": user_id, "budget": budgets.budget_json(row)})


async def set_user_budget(request: web.Request) -> web.Response:
    """PUT /api/v1/admin/users/{id}/budget {"limit", "period", "alert_percent"?}."""
    spec = budgets.parse(await read_object(request), "body")
    if spec is None:
        raise BadRequest("a budget object is required (DELETE removes it)", code="invalid_field")
    return await _put(request, spec)


async def remove_user_budget(request: web.Request) -> web.Response:
    return await _put(request, None)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/users/me/budget", my_budget)
    app.router.add_put("/api/v1/admin/users/{user_id}/budget", set_user_budget)
    app.router.add_delete("/api/v1/admin/users/{user_id}/budget", remove_user_budget)
