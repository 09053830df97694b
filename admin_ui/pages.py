"""What every page and action of the admin UI shares: who is looking (the session), the roles a page
admits, the CSRF check of every POST, rendering with the security headers, and redirects.

A page answers errors as HTML (the "page" error shape, rendered by the gateway's one middleware).
A page outside the actor's reach is a 404, exactly like a page that does not exist.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web

from admin_ui import sessions
from gateway.accounts.directory import scope_of
from gateway.core.admin_origin import is_admin_path
from gateway.core.app_keys import ADMIN_ORIGIN, CLOCK, DATABASE, SETTINGS
from gateway.core.errors import BadRequest, Forbidden, NotFound
from gateway.core.json_body import read_form
from gateway.core.middleware import CALL

SESSION = web.RequestKey("admin_session", sessions.Session)
FORM = web.RequestKey("admin_form", dict)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# No script runs on these pages, nothing loads from elsewhere, no one frames them.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# On every answer under /admin, its errors and static files included (decision 0027): a window that
# opens a page of ours gets no handle on it, and no other origin may embed what we answer.
ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Resource-Policy": "same-origin"}
# Messages a redirect after an action may show (by code: a link cannot make a page say anything else).
NOTICES = {
    "adjusted": "Credits adjusted.", "updated": "User updated.", "token_revoked": "Access token revoked.",
    "key_revoked": "API key revoked.", "released": "Device binding released.", "erased": "User erased.",
    "price_saved": "Price saved.", "bundle_saved": "Bundle saved.", "bundle_deleted": "Bundle deleted.",
    "logged_out": "Logged out.",
}


def now(request: web.Request) -> dt.datetime:
    return dt.datetime.fromtimestamp(request.app[CLOCK].now_s(), dt.timezone.utc)


def staff(request: web.Request):
    return request[SESSION].user


def scope(request: web.Request) -> int | None:
    """None for an admin (everyone), the manager's id for a manager (their clients)."""
    return scope_of(staff(request))


def redirect(location: str, notice: str | None = None) -> web.Response:
    """A 303 to a page of ours (after a POST: the browser then GETs it)."""
    assert location.startswith("/admin"), location
    if notice is not None:
        assert notice in NOTICES, notice
        location += ("&" if "?" in location else "?") + "notice=" + notice
    return web.Response(status=303, headers={"Location": location})


def to_login(request: web.Request) -> web.Response:
    target = request.path_qs if request.method == "GET" else "/admin/"
    return redirect("/admin/login?next=" + quote(target, safe=""))


async def form(request: web.Request) -> dict[str, str]:
    """The POSTed form, read once (size-capped, like every body the gateway reads itself)."""
    if FORM not in request:
        request[FORM] = await read_form(request)
    return request[FORM]


def admit(request: web.Request) -> None:
    """Every page and action answers only what a browser asks for a person: a page load or a form's
    POST, never a request a script made (decision 0027). The pages run no script, so such a request
    comes from some other page; Fetch Metadata (Sec-Fetch-*) and Origin name it in today's browsers,
    older ones send neither and the CSRF token still holds. Refused before the session is read."""
    call = request[CALL]
    call.route, call.error_shape = "admin_ui", "page"
    mode = request.headers.get("Sec-Fetch-Mode")
    if mode is not None and mode != "navigate":
        raise Forbidden("the admin UI answers page loads and form posts, not requests made by a script",
                        code="scripted_request")
    if request.method == "POST":
        origin, site = request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site")
        own = request.app[ADMIN_ORIGIN].origin
        if (origin is not None and origin.lower() != own) or site not in (None, "same-origin"):
            raise Forbidden(f"the admin UI's forms post from its own origin only, {own} (TOLLGATE_ADMIN_PUBLIC_URL "
                            "names it behind a proxy)", code="cross_site_request")


async def isolate(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: ISOLATION_HEADERS on every answer under /admin."""
    if is_admin_path(request.path):
        response.headers.update(ISOLATION_HEADERS)


def staff_page(*roles: str) -> Callable[[Handler], Handler]:
    """A page or action for a logged-in member of `roles` (others: 404), once `admit` let the request
    in. A POST must carry the session's CSRF token in its form, or it is refused (403) before the
    action runs."""
    allowed = roles or sessions.STAFF_ROLES

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def page(request: web.Request) -> web.StreamResponse:
            admit(request)
            token = request.cookies.get(sessions.COOKIE, "")
            session = await sessions.find(request.app[DATABASE], request.app[SETTINGS], token, now(request))
            if session is None:
                return to_login(request)
            if session.user.role not in allowed:
                raise NotFound("no such page")
            request[SESSION] = session
            if request.method == "POST":
                fields = await form(request)
                if not sessions.same_token(fields.get("csrf_token"), session.csrf_token):
                    raise Forbidden("the form's CSRF token is missing or wrong; reload the page and try again",
                                    code="csrf_failed")
            response = await handler(request)
            response.headers.update(SECURITY_HEADERS)
            return response

        return page

    return wrap


def render(request: web.Request, template: str, context: dict[str, Any], status: int = 200) -> web.Response:
    """The template with what every page shows: who is logged in, the CSRF token, a notice."""
    session = request.get(SESSION)
    notice = NOTICES.get(request.query.get("notice", ""))
    response = aiohttp_jinja2.render_template(
        template, request, {"me": session.user if session else None,
                            "csrf_token": session.csrf_token if session else "",
                            "notice": notice, "path": request.path, **context}, status=status)
    response.headers.update(SECURITY_HEADERS)
    return response


def query_day(request: web.Request, name: str) -> dt.date | None:
    """A date (YYYY-MM-DD) from the query string; absent or empty is None."""
    raw = request.query.get(name, "")
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError as error:
        raise BadRequest(f"query parameter {name!r} must be a date (YYYY-MM-DD)", code="invalid_query") from error


def midnight(day: dt.date) -> dt.datetime:
    """The start of a UTC day."""
    return dt.datetime.combine(day, dt.time(), dt.timezone.utc)
