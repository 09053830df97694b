"""/api/v1/auth: register, login, refresh, logout, me, and magic-link login."""

from __future__ import annotations

import html
import re
from urllib.parse import quote

import asyncpg
from aiohttp import web

import ledger
from gateway.accounts import audit
from gateway.accounts import email_address
from gateway.accounts import login_throttle
from gateway.accounts import logins
from gateway.accounts import users
from gateway.core.errors import BadRequest, Conflict, NotFound, Unauthenticated
from gateway.core.json_body import field, json_response, read_form, read_object
from gateway.accounts.resources import MAILER
from gateway.core.app_keys import DATABASE, SETTINGS
from gateway.accounts.mail import Mail
from gateway.core.middleware import CALL
from gateway.core.query_params import allow_only
from gateway.api.web_auth import bearer_claims, current_user, now, revoke_jti

USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,32}$")
REFERRAL_CODE = re.compile(r"^[A-Z0-9]{12}$")
MAGIC_TOKEN = re.compile(r"^[A-Za-z0-9_-]{64}$")
EMAIL_MAX, PASSWORD_MIN, PASSWORD_MAX, FULL_NAME_MAX = email_address.LENGTH_MAX, 8, 128, 200


def user_json(user: users.User, balance: ledger.Balance | None = None) -> dict:
    body = {"id": user.id, "email": user.email, "username": user.username, "full_name": user.full_name,
            "role": user.role, "plan": user.plan, "is_active": user.is_active,
            "referral_code": user.referral_code, "manager_id": user.manager_id}
    if balance is not None:
        body["balance"] = ledger.format_micro(balance.available_micro)
    return body


def _email(body: dict) -> str:
    return email_address.parse(field(body, "email", str))


async def register(request: web.Request) -> web.Response:
    request[CALL].route = "auth"
    await login_throttle.admit(request)
    body = await read_object(request)
    email = _email(body)
    username = field(body, "username", str).strip()
    if not USERNAME.match(username):
        raise BadRequest("username: 3-32 letters, digits, '_', '.' or '-'", code="invalid_username")
    password = field(body, "password", str)
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise BadRequest(f"password: {PASSWORD_MIN}-{PASSWORD_MAX} characters", code="invalid_password")
    full_name = field(body, "full_name", str).strip()
    if not 0 < len(full_name) <= FULL_NAME_MAX:
        raise BadRequest(f"full_name: 1-{FULL_NAME_MAX} characters", code="invalid_full_name")
    code = field(body, "referral_code", str, required=False, default="").strip().upper()
    database = request.app[DATABASE]
    referrer = None
    if code:
        referrer = await users.by_referral_code(database, code) if REFERRAL_CODE.match(code) else None
        if referrer is None:
            raise BadRequest("unknown referral code", code="invalid_referral_code")
    password_hash = await users.hash_password_off_loop(password)
    async with database.acquire() as connection, connection.transaction():
        try:
            user_id = await users.create(connection, email=email, password=None, username=username,
                                         full_name=full_name, password_hash=password_hash,
                                         referred_by=referrer.id if referrer else None)
        except asyncpg.UniqueViolationError as error:
            raise Conflict("username is taken", code="username_taken") from error
        if user_id is None:
            raise Conflict("an account with this email exists", code="email_taken")
        await ledger.user_account(connection, user_id)
        await audit.record(connection, actor_id=user_id, action="user.register", target_type="user",
                           target_id=user_id, request=request,
                           details={"referred_by": referrer.id} if referrer else None)
        user = await users.by_id(connection, user_id)
    assert user is not None
    return json_response(user_json(user), status=201)


async def login(request: web.Request) -> web.Response:
    request[CALL].route = "auth"
    await login_throttle.admit(request)
    body = await read_object(request)
    email = email_address.normalise(field(body, "email", str)[:EMAIL_MAX * 4])[:EMAIL_MAX]
    password = field(body, "password", str)[:PASSWORD_MAX * 4]
    failures = login_throttle.Failures(request, email)
    await failures.refuse_if_paused()
    database = request.app[DATABASE]
    user = await users.by_email(database, email)
    if not await users.verify_password_off_loop(user, password) or user is None or not user.is_active:
        await failures.count()
        raise Unauthenticated("wrong email or password", code="invalid_credentials")
    await failures.forget()
    pair = await logins.login(database, request.app[SETTINGS], user_id=user.id, role=user.role,
                              now=now(request))
    return json_response(pair.json())


async def refresh(request: web.Request) -> web.Response:
    request[CALL].route = "auth"
    body = await read_object(request)
    token = field(body, "refresh_token", str)
    pair = await logins.rotate(request.app[DATABASE], request.app[SETTINGS], token, now=now(request))
    return json_response(pair.json())


async def logout(request: web.Request) -> web.Response:
    """Ends this access token now, and the refresh token's session when one is given."""
    request[CALL].route = "auth"
    user = await current_user(request)
    body = await read_object(request) if request.can_read_body else {}
    token = field(body, "refresh_token", str, required=False, default="")
    claims = bearer_claims(request)
    await revoke_jti(request, str(claims.get("jti", "")), float(claims["exp"]))
    if token:
        await logins.revoke_family(request.app[DATABASE], request.app[SETTINGS], token,
                                   user_id=user.id, now=now(request))
    return json_response({"logged_out": True})


async def me(request: web.Request) -> web.Response:
    request[CALL].route = "auth"
    user = await current_user(request)
    allow_only(request)
    return json_response(user_json(user, await ledger.balance(request.app[DATABASE], user.id)))


async def request_magic_link(request: web.Request) -> web.Response:
    """Always 202, whether or not the address has an account (no account discovery)."""
    request[CALL].route = "auth"
    settings = request.app[SETTINGS]
    if settings.mail_sender == "none":
        raise NotFound("magic-link login is not enabled on this gateway", code="magic_link_disabled")
    await login_throttle.admit(request)
    body = await read_object(request)
    email = _email(body)
    user = await users.by_email(request.app[DATABASE], email)
    if user is not None and user.is_active:
        token = await logins.create_magic_link(request.app[DATABASE], settings, user_id=user.id,
                                               now=now(request))
        link = f"{settings.public_url.rstrip('/')}/api/v1/auth/magic-link/verify?token={quote(token)}"
        hours = settings.magic_link_ttl_s // 3600
        await request.app[MAILER].send(Mail(
            to=user.email, subject="Your tollgate login link",
            text=f"Open this link to log in (valid {hours} h, once):\n{link}\n"))
    return json_response({"sent": True}, status=202)


MAGIC_PAGE = """<!doctype html><meta charset="utf-8"><title>tollgate login</title>
<form method="post"><input type="hidden" name="token" value="{token}">
<button type="submit">Log in to tollgate</button></form>"""


async def magic_link_page(request: web.Request) -> web.Response:
    """GET shows a button; only the POST uses the link, so mail scanners cannot spend it."""
    request[CALL].route = "auth"
    token = request.query.get("token", "")
    return web.Response(text=MAGIC_PAGE.format(token=html.escape(token[:64])), content_type="text/html")


async def verify_magic_link(request: web.Request) -> web.Response:
    request[CALL].route = "auth"
    if request.content_type == "application/x-www-form-urlencoded":
        token = (await read_form(request)).get("token", "")
    else:
        token = field(await read_object(request), "token", str)
    if not isinstance(token, str) or not MAGIC_TOKEN.match(token):
        raise Unauthenticated("invalid or used login link", code="invalid_magic_link")
    database, when = request.app[DATABASE], now(request)
    async with database.acquire() as connection, connection.transaction():
        user_id = await logins.consume_magic_link(connection, token, now=when)
        user = await users.by_id(connection, user_id) if user_id is not None else None
        if user is None or not user.is_active:
            raise Unauthenticated("invalid or used login link", code="invalid_magic_link")
        await connection.execute(logins.TOUCH_LOGIN, user.id, when)
        pair = await logins.issue_pair(connection, request.app[SETTINGS], user_id=user.id,
                                       role=user.role, now=when)
    return json_response(pair.json())


async def set_password(request: web.Request) -> web.Response:
    """POST /api/v1/auth/password {"password", "current_password"?}: an account made by a guest
    purchase (no password yet) sets its first; an account with one must give it too."""
    request[CALL].route = "auth"
    user = await current_user(request)
    body = await read_object(request)
    password = field(body, "password", str)
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise BadRequest(f"password: {PASSWORD_MIN}-{PASSWORD_MAX} characters", code="invalid_password")
    if user.password_hash is not None:
        current = field(body, "current_password", str, required=False, default="")[:PASSWORD_MAX * 4]
        if not await users.verify_password_off_loop(user, current):
            raise Unauthenticated("current_password is wrong", code="invalid_credentials")
    password_hash = await users.hash_password_off_loop(password)
    async with request.app[DATABASE].acquire() as connection, connection.transaction():
        await connection.execute(users.SET_PASSWORD, user.id, password_hash)
        await audit.record(connection, actor_id=user.id, action="user.password_set", target_type="user",
                           target_id=user.id, request=request, details={"first": user.password_hash is None})
    return json_response({"password_set": True})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/auth/register", register)
    app.router.add_post("/api/v1/auth/login", login)
    app.router.add_post("/api/v1/auth/refresh", refresh)
    app.router.add_post("/api/v1/auth/logout", logout)
    app.router.add_get("/api/v1/auth/me", me)
    app.router.add_post("/api/v1/auth/magic-link", request_magic_link)
    app.router.add_get("/api/v1/auth/magic-link/verify", magic_link_page)
    app.router.add_post("/api/v1/auth/magic-link/verify", verify_magic_link)
    app.router.add_post("/api/v1/auth/password", set_password)
