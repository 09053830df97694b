"""The gateway's own session cookie on the desktop path (decision 0020): its attributes, keeping it
from the target both ways, and the cross-site rule for unsafe methods sent with it."""

from __future__ import annotations

from collections.abc import Iterable
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

from aiohttp import web

from gateway.core.config import Settings
from gateway.core.errors import Forbidden

COOKIE = "tollgate_session"
# RFC 9110 9.2.1: requests that change nothing; everything else through a cookie must come from the
# gateway's own pages.
SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS", "TRACE"))
DEFAULT_PORTS = {"http": 80, "https": 443}


def set_session_cookie(response: web.StreamResponse, settings: Settings, value: str, max_age_s: int) -> None:
    """HttpOnly always, Path=/ (every page, image and fetch of the target, whatever its mount), Secure
    and SameSite as configured."""
    response.set_cookie(COOKIE, value, path="/", max_age=max(0, max_age_s), httponly=True,
                        secure=settings.cookie_is_secure(), samesite=settings.cookie_samesite.strip().capitalize())


def clearing_header(settings: Settings) -> str:
    """A Set-Cookie value that makes the browser forget the session cookie (for error answers)."""
    jar: SimpleCookie = SimpleCookie()
    jar[COOKIE] = ""
    morsel = jar[COOKIE]
    morsel["path"], morsel["max-age"], morsel["httponly"] = "/", 0, True
    morsel["secure"], morsel["samesite"] = settings.cookie_is_secure(), settings.cookie_samesite.strip().capitalize()
    return morsel.OutputString()


def gateway_cookie_values(cookie_headers: Iterable[str]) -> list[str]:
    """Every value the Cookie headers give the gateway's cookie (RFC 6265 5.4: name=value pairs joined
    by "; "). Only our own cookie is looked for, and its value is checked strictly afterwards
    (browser_sessions.parse), so a split suffices: aiohttp's general parser builds a Morsel for
    every cookie of the page, about 10 µs on each browser request."""
    values = []
    for header in cookie_headers:
        if COOKIE not in header:
            continue
        for pair in header.split(";"):
            name, equals, value = pair.partition("=")
            if equals and name.strip() == COOKIE:
                values.append(value.strip())
    return values


def without_gateway_cookie(cookie_header: str) -> str:
    """A Cookie header without the gateway's cookie; the target's cookies stay byte for byte.

    RFC 6265 5.4: the pairs are joined by "; ". A pair is dropped when its name is ours, and a
    nameless one (a value alone, which browsers send for `Set-Cookie: x`) when it reads as our name.
    """
    kept = [pair for pair in cookie_header.split(";") if _pair_name(pair) != COOKIE]
    return ";".join(kept).strip()


def names_gateway_cookie(set_cookie_value: str) -> bool:
    """Whether a target's Set-Cookie would write (or shadow) the gateway's cookie: it is dropped.

    A cookie with an empty name (`=tollgate_session=x`) is stored by browsers that follow RFC 6265bis
    and sent as its value alone, `tollgate_session=x`: it reads as ours, so it is judged by its value.
    """
    pair = set_cookie_value.partition(";")[0]
    name, equals, value = pair.partition("=")
    if equals and not name.strip():
        pair = value
    return _pair_name(pair) == COOKIE


def _pair_name(pair: str) -> str:
    name, equals, _ = pair.partition("=")
    return name.strip() if equals else pair.strip()


def public_origin(public_url: str) -> str:
    """The gateway's origin as a browser serialises it in Origin: scheme://host[:port], default port left out."""
    return _origin(public_url) or ""


def _origin(url: str) -> str | None:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if scheme not in DEFAULT_PORTS or not host:
        return None
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" + (f":{port}" if port and port != DEFAULT_PORTS[scheme] else "")


def require_same_origin(request: web.Request, origin: str) -> None:
    """An unsafe method sent with the session cookie must come from the gateway's own origin: its
    Origin header, or without one its Referer, names the public URL. SameSite keeps most cross-site
    requests from carrying the cookie at all; this refuses the rest (same-site but cross-origin pages,
    SameSite=None, older browsers)."""
    if request.method in SAFE_METHODS:
        return
    claimed = request.headers.getall("origin", []) or request.headers.getall("referer", [])
    if len(claimed) != 1 or _origin(claimed[0]) != origin:
        raise Forbidden("a cookie session accepts unsafe methods only from the gateway's own pages (Origin or "
                        "Referer must name TOLLGATE_PUBLIC_URL)", code="cross_site_request")
