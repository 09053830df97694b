"""Admin and auth JSON endpoints of the foundation: login, issue and revoke access tokens."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from gateway import jwt_tokens, tokens, users
from gateway.errors import BadRequest, Forbidden, NotFound, Unauthenticated
from gateway.json_body import database_id, field, json_response, read_object
from gateway.keys import AUTHENTICATOR, CLOCK, DATABASE, SETTINGS
from gateway.middleware import CALL

TOKEN_HOURS_MAX = 24 * 366
TOKEN_HOURS_MIN = 1 / 60  # one minute; shorter rounds to nothing
EMAIL_MAX = 254


def _now(request: web.Request) -> dt.datetime:
    return dt.datetime.fromtimestamp(request.app[CLOCK].now_s(), dt.timezone.utc)


async def current_user(request: web.Request) -> users.User:
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthenticated("missing bearer token", code="missing_jwt")
    settings = request.app[SETTINGS]
    claims = jwt_tokens.decode_access(settings.jwt_secret.value, credential.strip(),
                                      now_s=request.app[CLOCK].now_s())
    try:
        user_id = int(claims["sub"])
    except ValueError as error:
        raise Unauthenticated("invalid bearer token", code="invalid_jwt") from error
    user = await users.by_id(request.app[DATABASE], user_id)
    if user is None or not user.is_active:
        raise Unauthenticated("account not found or disabled", code="invalid_jwt")
    return user


async def require_admin(request: web.Request) -> users.User:
    user = await current_user(request)
    if user.role != "admin":
        raise Forbidden("admin role required", code="admin_required")
    return user


async def login(request: web.Request) -> web.Response:
    request[CALL].route = "auth"
    body = await read_object(request)
    email = field(body, "email", str)
    password = field(body, "password", str)
    user = await users.by_email(request.app[DATABASE], email[:EMAIL_MAX])
    if not await users.verify_password_off_loop(user, password) or user is None or not user.is_active:
        raise Unauthenticated("wrong email or password", code="invalid_credentials")
    settings = request.app[SETTINGS]
    token = jwt_tokens.issue_access(settings.jwt_secret.value, user_id=user.id, role=user.role,
                                    now_s=request.app[CLOCK].now_s(), ttl_s=settings.access_token_ttl_s)
    return json_response({"access_token": token, "token_type": "bearer",
                          "expires_in": settings.access_token_ttl_s})


async def issue_token(request: web.Request) -> web.Response:
    """POST /api/v1/admin/tokens {email | user_id, hours, scope}: the plaintext is shown once."""
    request[CALL].route = "admin"
    await require_admin(request)
    body = await read_object(request)
    hours = field(body, "hours", (int, float))
    scope = field(body, "scope", str, required=False, default="full")
    if not TOKEN_HOURS_MIN <= hours <= TOKEN_HOURS_MAX:
        raise BadRequest(f"hours must be between 1/60 and {TOKEN_HOURS_MAX}", code="invalid_field")
    if scope not in tokens.SCOPES:
        raise BadRequest(f"scope must be one of {', '.join(tokens.SCOPES)}", code="invalid_field")
    database = request.app[DATABASE]
    if "user_id" in body:
        user_id = database_id(field(body, "user_id", int))
        user = await users.by_id(database, user_id) if user_id else None
    else:
        user = await users.by_email(database, field(body, "email", str)[:EMAIL_MAX])
    if user is None:
        raise NotFound("no such user", code="user_not_found")
    issued = await tokens.issue(database, user_id=user.id, hours=hours, scope=scope, now=_now(request))
    return json_response({"id": issued.id, "token": issued.token, "user_id": user.id,
                          "scope": issued.scope, "expires_at": issued.expires_at.isoformat()},
                         status=201)


async def revoke_token(request: web.Request) -> web.Response:
    """DELETE /api/v1/admin/tokens/{id}: refused from the very next request on."""
    request[CALL].route = "admin"
    await require_admin(request)
    token_id = database_id(request.match_info["token_id"])
    token_hash = None
    if token_id is not None:
        token_hash = await tokens.revoke(request.app[DATABASE], token_id, now=_now(request))
    if token_hash is None:
        raise NotFound("no such token", code="token_not_found")
    await request.app[AUTHENTICATOR].forget(token_hash)
    return json_response({"id": token_id, "revoked": True})
