"""What a desktop request presents: X-Access-Token + X-Device-ID, or a browser session's cookie
(decision 0020); either way one authentication with the same checks and costs."""

from __future__ import annotations

import re

from aiohttp import web

from gateway.core.app_keys import SETTINGS
from gateway.core.call import Call, Principal
from gateway.core.errors import BadRequest, Conflict, Unauthenticated
from gateway.proxy import browser_sessions
from gateway.proxy.cookies import clearing_header, gateway_cookie_values, require_same_origin
from gateway.proxy.resources import AUTHENTICATOR, PUBLIC_ORIGIN

# Visible ASCII only: the id is echoed in logs and stored per session.
DEVICE_ID_PATTERN = re.compile(r"^[\x21-\x7e]{1,128}$")


def device_id_of(request: web.Request) -> str:
    values = request.headers.getall("x-device-id", [])
    if not values:
        raise BadRequest("missing X-Device-ID header", code="missing_device_id")
    if len(values) > 1 or not DEVICE_ID_PATTERN.match(values[0]):
        raise BadRequest("X-Device-ID must be 1-128 visible ASCII characters", code="invalid_device_id")
    return values[0]


def access_token_of(request: web.Request) -> str:
    values = request.headers.getall("x-access-token", [])
    if len(values) > 1:
        raise BadRequest("more than one X-Access-Token header", code="invalid_token_header")
    return values[0] if values else ""


def session_cookie_of(request: web.Request) -> str | None:
    """The browser session cookie's value, when the request carries no X-Access-Token (the headers win)."""
    if "x-access-token" in request.headers or "cookie" not in request.headers:
        return None
    values = gateway_cookie_values(request.headers.getall("cookie"))
    if len(values) > 1:
        # Ours is host-only with Path=/, so a browser holds one: a second was tossed in from elsewhere
        # (a sibling domain) to make this browser act in someone else's session.
        raise Unauthenticated("more than one browser session cookie", code="invalid_session")
    return values[0] if values else None


async def authenticate(request: web.Request, call: Call) -> Principal:
    """Who calls and from which device (set on the call): by the headers, else by the session cookie."""
    cookie = session_cookie_of(request)
    if cookie is None:
        token = access_token_of(request)
        if not token and "x-device-id" not in request.headers:
            raise Unauthenticated("send X-Access-Token and X-Device-ID, or open a browser session",
                                  code="missing_token")
        call.device_id = device_id_of(request)
        return await request.app[AUTHENTICATOR].authenticate(token, call.device_id, call.client_ip)
    require_same_origin(request, request.app[PUBLIC_ORIGIN])
    session = browser_sessions.parse(cookie)
    try:
        if session is None:
            raise Unauthenticated("malformed browser session cookie", code="invalid_session")
        principal, call.device_id = await request.app[AUTHENTICATOR].authenticate_session(session, call.client_ip)
    except (Unauthenticated, Conflict) as refusal:
        # The session is over (or never was): the browser forgets its cookie.
        refusal.headers["Set-Cookie"] = clearing_header(request.app[SETTINGS])
        raise
    return principal
