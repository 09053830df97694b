"""Browser sessions over HTTP (decision 0020): the desktop client opens one with its headers, or
hands the system browser a one-time link; the browser logs out with DELETE.

    POST   /api/v1/proxy/session            X-Access-Token + X-Device-ID -> 201 and the cookie
    POST   /api/v1/proxy/session/link       X-Access-Token + X-Device-ID [{"path": "/page"}] -> 201 {"url"}
    GET    /api/v1/proxy/session/link?code= -> 303 to the target page, with the cookie (once, briefly)
    DELETE /api/v1/proxy/session            the cookie -> 204 (that session); the headers -> 200 (all of the token's)
"""

from __future__ import annotations

import datetime as dt
import re

from aiohttp import web

from gateway.accounts import access_tokens, login_throttle
from gateway.accounts.resources import CREDENTIAL_OUTBOX
from gateway.core.app_keys import CLOCK, DATABASE, SETTINGS
from gateway.core.call import Call, Principal
from gateway.core.errors import BadRequest, Unauthenticated
from gateway.core.json_body import field, json_response, read_object
from gateway.core.middleware import CALL
from gateway.proxy import browser_sessions
from gateway.proxy.authorization import stays_under_base
from gateway.proxy.cookies import clearing_header, require_same_origin, set_session_cookie
from gateway.proxy.credentials import access_token_of, device_id_of, session_cookie_of
from gateway.proxy.rate_limits import limit_headers
from gateway.proxy.resources import AUTHENTICATOR, PUBLIC_ORIGIN, URL_MAPS

SESSION_PATH = "/api/v1/proxy/session"
LINK_PATH = "/api/v1/proxy/session/link"
# Where a link lands: a path on the target (query allowed), visible ASCII, not protocol-relative.
LANDING_PATTERN = re.compile(r"^/(?![/\\])[\x21-\x7e]{0,2047}$")
# Nothing about a session answer may be cached or leak its URL onwards.
PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _now(request: web.Request) -> dt.datetime:
    return dt.datetime.fromtimestamp(request.app[CLOCK].now_s(), dt.timezone.utc)


def _landing_url(request: web.Request, path: str) -> str:
    return request.app[URL_MAPS]["/api/v1/proxy"].public_url + path


async def _authenticated(request: web.Request, call: Call, route: str) -> tuple[str, Principal]:
    """The desktop client's headers, checked (and counted) as any proxied request is."""
    call.route = route
    token = access_token_of(request)
    call.device_id = device_id_of(request)
    principal = await request.app[AUTHENTICATOR].authenticate(token, call.device_id, call.client_ip)
    call.principal = principal
    call.extra_headers.update(limit_headers(principal))
    return token, principal


def _expires_json(expires_at: dt.datetime, now: dt.datetime) -> dict:
    return {"expires_at": expires_at.isoformat().replace("+00:00", "Z"),
            "expires_in_s": max(0, int((expires_at - now).total_seconds()))}


async def open_session(request: web.Request) -> web.Response:
    call = request[CALL]
    token, principal = await _authenticated(request, call, "proxy_session")
    now = _now(request)
    settings = request.app[SETTINGS]
    token_expires_at = dt.datetime.fromtimestamp(principal.expires_ms / 1000, dt.timezone.utc)
    opened = await browser_sessions.open_session(
        request.app[DATABASE], token_id=principal.token_id, token_hash=access_tokens.digest(token),
        device_id=call.device_id, token_expires_at=token_expires_at, now=now, ttl_s=settings.browser_session_ttl_s)
    response = json_response({"device_id": call.device_id, **_expires_json(opened.expires_at, now)}, status=201)
    response.headers.update(PRIVATE)
    set_session_cookie(response, settings, opened.cookie_value, int((opened.expires_at - now).total_seconds()))
    return response


async def make_link(request: web.Request) -> web.Response:
    call = request[CALL]
    _, principal = await _authenticated(request, call, "proxy_session_link")
    path = "/"
    if request.body_exists:
        path = field(await read_object(request), "path", str, required=False, default="/")
    if not LANDING_PATTERN.fullmatch(path) or not stays_under_base(path.partition("?")[0]):
        raise BadRequest("path must be a path on the target, e.g. \"/\" or \"/page?x=1\"", code="invalid_path")
    now = _now(request)
    settings = request.app[SETTINGS]
    code, expires_at = await browser_sessions.make_link(
        request.app[DATABASE], token_id=principal.token_id, device_id=call.device_id, path=path, now=now,
        ttl_s=settings.browser_link_ttl_s)
    url = f"{settings.public_url.rstrip('/')}{LINK_PATH}?code={code}"
    response = json_response({"url": url, **_expires_json(expires_at, now)}, status=201)
    response.headers.update(PRIVATE)
    return response


async def follow_link(request: web.Request) -> web.Response:
    """The system browser opens the link: the code is spent, the cookie set, the target page next."""
    call = request[CALL]
    call.route = "proxy_session_link"
    await login_throttle.admit(request)  # a code is 256 random bits; this bounds the guessing's cost
    codes = request.query.getall("code", [])
    landing = None
    if len(codes) == 1:
        settings = request.app[SETTINGS]
        landing = await browser_sessions.redeem_link(request.app[DATABASE], codes[0], now=_now(request),
                                                     ttl_s=settings.browser_session_ttl_s)
    if landing is None:
        raise Unauthenticated("this link is unknown, used or expired: open a new one from the desktop client",
                              code="invalid_link")
    response = web.Response(status=303, headers={"Location": _landing_url(request, landing.path), **PRIVATE})
    max_age_s = int((landing.session.expires_at - _now(request)).total_seconds())
    set_session_cookie(response, request.app[SETTINGS], landing.session.cookie_value, max_age_s)
    return response


async def close_session(request: web.Request) -> web.Response:
    """Log out: with the cookie, that browser session; with the desktop client's headers, every one of the token."""
    call = request[CALL]
    app = request.app
    cookie = session_cookie_of(request)
    if cookie is None:
        _, principal = await _authenticated(request, call, "proxy_session")
        ended = await browser_sessions.end_all(app[DATABASE], principal.token_id, _now(request))
        response = json_response({"ended": ended})
    else:
        call.route = "proxy_session"
        require_same_origin(request, app[PUBLIC_ORIGIN])
        session = browser_sessions.parse(cookie)
        ended = session is not None and await browser_sessions.end(app[DATABASE], session, "logout", _now(request))
        response = web.Response(status=204)
    if ended:
        await app[CREDENTIAL_OUTBOX].push_from(app[DATABASE])  # the tombstones reach Redis before we answer
    response.headers["Set-Cookie"] = clearing_header(app[SETTINGS])
    response.headers.update(PRIVATE)
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_post(SESSION_PATH, open_session)
    app.router.add_delete(SESSION_PATH, close_session)
    app.router.add_post(LINK_PATH, make_link)
    # No HEAD: a probe of the link must not spend its single use.
    app.router.add_get(LINK_PATH, follow_link, allow_head=False)
