"""Admin token endpoints: issue an access token without payment, revoke one without refund."""

from __future__ import annotations

from aiohttp import web

from gateway.accounts import audit
from gateway.accounts import access_tokens
from gateway.accounts import users
from gateway.core.errors import BadRequest, NotFound
from gateway.core.json_body import database_id, field, json_response, read_object
from gateway.accounts.resources import CREDENTIAL_OUTBOX
from gateway.core.app_keys import DATABASE
from gateway.core.middleware import CALL
from gateway.api.web_auth import now, require_admin

TOKEN_HOURS_MAX = 24 * 366
TOKEN_HOURS_MIN = 1 / 60  # one minute; shorter rounds to nothing
EMAIL_MAX = 254


async def issue_token(request: web.Request) -> web.Response:
    """POST /api/v1/admin/tokens {email | user_id, hours, scope}: the plaintext is shown once."""
    request[CALL].route = "admin"
    admin = await require_admin(request)
    body = await read_object(request)
    hours = field(body, "hours", (int, float))
    scope = field(body, "scope", str, required=False, default="full")
    if not TOKEN_HOURS_MIN <= hours <= TOKEN_HOURS_MAX:
        raise BadRequest(f"hours must be between 1/60 and {TOKEN_HOURS_MAX}", code="invalid_field")
    if scope not in access_tokens.SCOPES:
        raise BadRequest(f"scope must be one of {', '.join(access_tokens.SCOPES)}", code="invalid_field")
    database = request.app[DATABASE]
    if "user_id" in body:
        user_id = database_id(field(body, "user_id", int))
        user = await users.by_id(database, user_id) if user_id else None
    else:
        user = await users.by_email(database, field(body, "email", str)[:EMAIL_MAX])
    if user is None:
        raise NotFound("no such user", code="user_not_found")
    async with database.acquire() as connection, connection.transaction():
        issued = await access_tokens.issue(connection, user_id=user.id, hours=hours, scope=scope, now=now(request))
        await audit.record(connection, actor_id=admin.id, action="token.issue", target_type="access_token",
                           target_id=issued.id, request=request,
                           details={"user_id": user.id, "hours": hours, "scope": scope})
    return json_response({"id": issued.id, "token": issued.token, "user_id": user.id,
                          "scope": issued.scope, "expires_at": issued.expires_at.isoformat()},
                         status=201)


async def revoke_token(request: web.Request) -> web.Response:
    """DELETE /api/v1/admin/tokens/{id}: refused from the very next request on."""
    request[CALL].route = "admin"
    admin = await require_admin(request)
    token_id = database_id(request.match_info["token_id"])
    token_hash = None
    if token_id is not None:
        async with request.app[DATABASE].acquire() as connection, connection.transaction():
            token_hash = await access_tokens.revoke(connection, token_id, now=now(request))
            if token_hash is not None:
                await audit.record(connection, actor_id=admin.id, action="token.revoke_without_refund",
                                   target_type="access_token", target_id=token_id, request=request)
    if token_hash is None:
        raise NotFound("no such token", code="token_not_found")
    # The revocation queued its cache refusal with it (decision 0015): push it to Redis now.
    await request.app[CREDENTIAL_OUTBOX].push_from(request.app[DATABASE])
    return json_response({"id": token_id, "revoked": True})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/admin/tokens", issue_token)
    app.router.add_delete("/api/v1/admin/tokens/{token_id}", revoke_token)
