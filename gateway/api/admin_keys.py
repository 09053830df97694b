"""Staff over a user's API keys: list them with their budgets' spend, revoke one (admins everyone's,
managers their clients'; anything else is a 404). The rules live in gateway/accounts/user_credentials,
which the admin UI uses too."""

from __future__ import annotations

from aiohttp import web

from gateway.accounts import budgets, directory, user_credentials
from gateway.accounts.resources import CREDENTIAL_OUTBOX
from gateway.api.keys import key_json
from gateway.api.web_auth import now, require_role
from gateway.core.app_keys import DATABASE
from gateway.core.json_body import database_id, json_response
from gateway.core.middleware import CALL
from gateway.core.query_params import allow_only, NUMBER

KEYS_LISTED_MAX = 1000


def _path_id(request: web.Request, name: str) -> int | None:
    raw = request.match_info[name]
    return database_id(raw) if NUMBER.match(raw) else None


async def list_user_keys(request: web.Request) -> web.Response:
    """GET /api/v1/admin/users/{id}/keys: newest first, never a secret or its hash."""
    request[CALL].route = "admin"
    actor = await require_role(request, "admin", "manager")
    allow_only(request)
    database, when = request.app[DATABASE], now(request)
    user = await directory.get_user(database, directory.scope_of(actor), _path_id(request, "user_id"))
    rows = await user_credentials.keys(database, user["id"], limit=KEYS_LISTED_MAX)
    spend = await budgets.of_keys(database, [row["id"] for row in rows], when)
    return json_response({"user_id": user["id"],
                          "items": [key_json(row, when, spend.get(row["id"])) for row in rows]})


async def revoke_user_key(request: web.Request) -> web.Response:
    """POST /api/v1/admin/keys/{id}/revoke: refused from the key's next request on; audited."""
    request[CALL].route = "admin"
    actor = await require_role(request, "admin", "manager")
    key_id = _path_id(request, "key_id")
    owner = await user_credentials.revoke_key(request.app[DATABASE], request.app[CREDENTIAL_OUTBOX], actor=actor,
                                              key_id=key_id, at=now(request), ip=request[CALL].client_ip)
    return json_response({"id": key_id, "user_id": owner, "revoked": True})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/admin/users/{user_id}/keys", list_user_keys)
    app.router.add_post("/api/v1/admin/keys/{key_id}/revoke", revoke_user_key)
