"""Logging in and out of the admin UI: admins and managers only, behind the JSON API's login brakes
(a per-address window and failed-login pauses); the login form carries a CSRF token of its own."""

from __future__ import annotations

from aiohttp import web

from admin_ui import pages, sessions
from gateway.accounts import audit, email_address, login_throttle, users
from gateway.core.app_keys import ADMIN_ORIGIN, DATABASE, SETTINGS
from gateway.core.errors import Forbidden
from gateway.core.middleware import CALL

EMAIL_MAX, PASSWORD_MAX = email_address.LENGTH_MAX, 128
LOGIN_FORM_TTL_S = 3600


def _safe_next(raw: str) -> str:
    """Where to go after logging in: one of our pages, never another site (//host, /\\host)."""
    if raw.startswith("/admin") and not raw.startswith(("//", "/\\")) and "\\" not in raw:
        return raw
    return "/admin/"


def _form_page(request: web.Request, token: str, *, error: str = "", email: str = "",
               status: int = 200) -> web.Response:
    response = pages.render(request, "login.html", {
        "login_token": token, "error": error, "email": email,
        "next": _safe_next(request.query.get("next", ""))}, status=status)
    sessions.set_cookie(response, request.app[ADMIN_ORIGIN].https, sessions.LOGIN_COOKIE, token,
                        path="/admin/login", max_age_s=LOGIN_FORM_TTL_S)
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    """GET /admin/login: the form (or the dashboard, when already logged in)."""
    pages.admit(request)
    token = request.cookies.get(sessions.COOKIE, "")
    if await sessions.find(request.app[DATABASE], request.app[SETTINGS], token, pages.now(request)):
        return pages.redirect("/admin/")
    return _form_page(request, sessions.new_token())


async def log_in(request: web.Request) -> web.StreamResponse:
    """POST /admin/login {csrf_token, email, password, next}."""
    pages.admit(request)
    call = request[CALL]
    fields = await pages.form(request)
    expected = request.cookies.get(sessions.LOGIN_COOKIE, "")
    if not expected or not sessions.same_token(fields.get("csrf_token"), expected):
        raise Forbidden("the login form expired or was not ours; reload the page and try again",
                        code="csrf_failed")
    await login_throttle.admit(request)
    email = email_address.normalise(fields.get("email", "")[:EMAIL_MAX * 4])[:EMAIL_MAX]
    password = fields.get("password", "")[:PASSWORD_MAX * 4]
    failures = login_throttle.Failures(request, email)
    await failures.refuse_if_paused()
    database = request.app[DATABASE]
    user = await users.by_email(database, email)
    if not await users.verify_password_off_loop(user, password) or user is None or not user.is_active:
        await failures.count()
        return _form_page(request, expected, error="Wrong email or password.", email=email, status=401)
    await failures.forget()
    if user.role not in sessions.STAFF_ROLES:
        return _form_page(request, expected, error="This account cannot sign in to the admin UI.",
                          email=email, status=403)
    when = pages.now(request)
    token = await sessions.create(database, request.app[SETTINGS], user.id, when)
    await audit.record(database, actor_id=user.id, action="admin_ui.login", target_type="user",
                       target_id=user.id, ip=call.client_ip)
    response = pages.redirect(_safe_next(fields.get("next", "")))
    secure = request.app[ADMIN_ORIGIN].https
    sessions.set_cookie(response, secure, sessions.COOKIE, token, path=sessions.PATH,
                        max_age_s=request.app[SETTINGS].admin_session_ttl_s)
    sessions.clear_cookie(response, secure, sessions.LOGIN_COOKIE, path="/admin/login")
    return response


@pages.staff_page()
async def log_out(request: web.Request) -> web.StreamResponse:
    """POST /admin/logout {csrf_token}: the session ends now, on the server."""
    session = request[pages.SESSION]
    database = request.app[DATABASE]
    await sessions.end(database, session.id)
    await audit.record(database, actor_id=session.user.id, action="admin_ui.logout", target_type="user",
                       target_id=session.user.id, ip=request[CALL].client_ip)
    response = pages.redirect("/admin/login", "logged_out")
    sessions.clear_cookie(response, request.app[ADMIN_ORIGIN].https, sessions.COOKIE, path=sessions.PATH)
    return response
