"""Who is calling the JSON API: the bearer JWT, its user, and the role checks handlers need."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from gateway.accounts import jwt_tokens
from gateway.accounts import logins
from gateway.accounts import users
from gateway.core.errors import Forbidden, ServiceUnavailable, Unauthenticated
from gateway.core.app_keys import CLOCK, DATABASE, REDIS, SETTINGS
from gateway.core.failures import REDIS_FAILURES

# A logged-out access token's jti, kept until the token would have expired anyway.
REVOKED_JTI_KEY = "tg:jwt:revoked:{}"
USER = web.RequestKey("user", users.User)


def now(request: web.Request) -> dt.datetime:
    return dt.datetime.fromtimestamp(request.app[CLOCK].now_s(), dt.timezone.utc)


def bearer_claims(request: web.Request) -> dict:
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthenticated("missing bearer token", code="missing_jwt")
    if not credential.isascii():  # a JWT is ASCII; non-UTF-8 bytes arrive as surrogates
        raise Unauthenticated("invalid bearer token", code="invalid_jwt")
    return jwt_tokens.decode_access(request.app[SETTINGS].jwt_secret.value, credential.strip(),
                                    now_s=request.app[CLOCK].now_s())


async def current_user(request: web.Request) -> users.User:
    """The active user behind the bearer token (cached on the request)."""
    if USER in request:
        return request[USER]
    claims = bearer_claims(request)
    try:
        user_id = int(claims["sub"])
    except (TypeError, ValueError) as error:
        raise Unauthenticated("invalid bearer token", code="invalid_jwt") from error
    if await _is_revoked(request, str(claims.get("jti", ""))):
        raise Unauthenticated("bearer token was logged out", code="jwt_revoked")
    family = claims.get("fam")
    user, session_ended = await logins.session_user(request.app[DATABASE], user_id,
                                                    family if isinstance(family, str) else None)
    if user is None or not user.is_active:
        raise Unauthenticated("account not found or disabled", code="invalid_jwt")
    if session_ended:
        raise Unauthenticated("this login session was ended; log in again", code="session_revoked")
    request[USER] = user
    return user


async def require_role(request: web.Request, *roles: str) -> users.User:
    user = await current_user(request)
    if user.role not in roles:
        raise Forbidden(f"{' or '.join(roles)} role required", code="role_required")
    return user


async def require_admin(request: web.Request) -> users.User:
    return await require_role(request, "admin")


async def revoke_jti(request: web.Request, jti: str, expires_s: float) -> None:
    ttl = int(expires_s - request.app[CLOCK].now_s()) + 1
    if jti and ttl > 0:
        try:
            await request.app[REDIS].set(REVOKED_JTI_KEY.format(jti), "1", ex=ttl)
        except REDIS_FAILURES as error:  # a logout that cannot be recorded must not look successful
            raise ServiceUnavailable("logout could not be recorded", code="store_unavailable") from error


async def _is_revoked(request: web.Request, jti: str) -> bool:
    if not jti:
        return False
    try:
        return bool(await request.app[REDIS].exists(REVOKED_JTI_KEY.format(jti)))
    except REDIS_FAILURES as error:
        # Fail closed: a logged-out token must not come back during a Redis outage.
        raise ServiceUnavailable("session store unavailable", code="store_unavailable") from error
