"""The desktop-client hot path: authenticate -> authorize -> forward -> record, one stage each."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from gateway.proxy.authorization import authorize_target_path, stays_under_base
from gateway.core.errors import BadRequest
from gateway.proxy.forwarding import relay
from gateway.core.json_body import json_response
from gateway.core.app_keys import SETTINGS
from gateway.core.middleware import CALL
from gateway.proxy.rate_limits import limit_headers
from gateway.proxy import credentials, session_endpoints
from gateway.proxy.cookies import public_origin
from gateway.proxy.credentials import access_token_of, device_id_of
from gateway.proxy.resources import AUTHENTICATOR, PUBLIC_ORIGIN, SESSIONS, TARGET_SESSION, URL_MAPS, proxy_ctx
from gateway.proxy.rewriting import UrlMap


def make_proxy_handler(prefix: str):
    """One handler per mount prefix, so the prefix is fixed at start-up, not parsed per request."""

    async def proxy(request: web.Request) -> web.StreamResponse:
        app = request.app
        call = request[CALL]
        call.route = "proxy"
        principal = call.principal = await credentials.authenticate(request, call)
        call.extra_headers.update(limit_headers(principal))
        try:
            if not request.raw_path.startswith(prefix):
                raise BadRequest("the request path does not start with the mount prefix as sent", code="bad_path")
            tail = request.raw_path[len(prefix):] or "/"
            authorize_target_path(principal, request.path[len(prefix):] or "/")
            if not stays_under_base(tail.partition("?")[0]):
                raise BadRequest("dot segments, encoded slashes and backslashes are not allowed in "
                                 "proxied paths", code="bad_path")
            url_map = app[URL_MAPS][prefix]
            settings = app[SETTINGS]
            return await relay(request, call, app[TARGET_SESSION], url_map.target_url + tail,
                               url_map, settings.body_size_max_bytes)
        finally:
            app[SESSIONS].record(principal.token_id, call.device_id, call.client_ip,
                                 request.headers.get("user-agent", ""), call.bytes_in, call.bytes_out)

    return proxy


async def status(request: web.Request) -> web.Response:
    """GET /api/v1/proxy/status: is this token valid, what may it do, which device holds it."""
    app = request.app
    call = request[CALL]
    call.route = "proxy_status"
    token = access_token_of(request)
    device_id = device_id_of(request) if "x-device-id" in request.headers else ""
    principal, device = await app[AUTHENTICATOR].peek(token, device_id, call.client_ip)
    now_ms = app[AUTHENTICATOR].clock.now_ms()
    idle_ms = app[SETTINGS].device_idle_s * 1000
    session = None
    if device.holder:
        session = {
            "device_id": device.holder,
            "this_device": device.holder == device_id,
            "last_seen_at": _iso(device.last_seen_ms),
            "releases_at": _iso(device.last_seen_ms + idle_ms),
        }
    return json_response({
        "valid": True,
        "token": {
            "id": principal.token_id,
            "scope": principal.scope,
            "expires_at": _iso(principal.expires_ms),
            "expires_in_s": max(0, (principal.expires_ms - now_ms) // 1000),
        },
        "session": session,
    })


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat().replace("+00:00", "Z")


PROXY_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def add_routes(app: web.Application) -> None:
    settings = app[SETTINGS]
    app.cleanup_ctx.append(proxy_ctx)
    app[URL_MAPS] = {prefix: UrlMap.from_urls(settings.target_url, settings.public_url, prefix)
                     for prefix in settings.target_prefixes}
    app[PUBLIC_ORIGIN] = public_origin(settings.public_url)
    app.router.add_get("/api/v1/proxy/status", status)
    # Before the mount's catch-all: these paths (with these methods) are the gateway's own.
    session_endpoints.add_routes(app)
    for prefix in settings.target_prefixes:
        proxy = make_proxy_handler(prefix)
        for method in PROXY_METHODS:
            app.router.add_route(method, prefix + "/{tail:.*}", proxy)
