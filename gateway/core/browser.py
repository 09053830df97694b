"""What browsers need from tollgate: CORS for the configured origins on the JSON API and the AI
routes (preflights answered 204 here; credentials allowed, so each answer names the one origin it
allows, never `*`), and security headers on every response — nosniff, a referrer policy, HSTS when
the public URL is https, and no framing of tollgate's own HTML pages. The desktop proxy's answers
are the target's: they get the general headers only where the target set none, and no CORS of ours
(a preflight on the proxied paths goes to the target)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from gateway.core.config import ConfigError, Settings
from gateway.core.errors import Forbidden

ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE"
# Request headers a browser client may send cross-origin (credentials and the providers' own).
ALLOWED_HEADERS = ("authorization, content-type, idempotency-key, x-request-id, x-api-key, x-goog-api-key, "
                   "anthropic-version, anthropic-beta, openai-organization, openai-project")
EXPOSED_HEADERS = ("X-Request-Id, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, "
                   "Content-Disposition")
AI_PREFIXES = ("/openai/", "/anthropic/", "/gemini/")
HSTS = "max-age=31536000"
FRAME_DENIED = {"Content-Security-Policy": "frame-ancestors 'none'", "X-Frame-Options": "DENY"}


def parse_origins(raw: str) -> frozenset[str]:
    """'https://app.example.com, http://localhost:3000' -> the origins, normalised; anything that is
    not scheme://host[:port] stops start-up (a wildcard cannot go with credentials)."""
    origins = set()
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
                or parts.query or parts.fragment or parts.username or "*" in item:
            raise ConfigError(f"TOLLGATE_CORS_ORIGINS: {item!r} is not an origin (scheme://host[:port])")
        origins.add(f"{parts.scheme}://{parts.netloc.lower()}")
    return frozenset(origins)


@dataclass(frozen=True, slots=True)
class BrowserPolicy:
    """Precomputed at start-up from the settings."""

    origins: frozenset[str]
    proxied_prefixes: tuple[str, ...]
    max_age_s: int
    https: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> BrowserPolicy:
        return cls(parse_origins(settings.cors_origins), tuple(p.rstrip("/") + "/" for p in settings.target_prefixes),
                   settings.cors_max_age_s, settings.public_url.lower().startswith("https://"))

    def shares(self, path: str) -> bool:
        """Whether the path is ours to answer cross-origin: the JSON API and the AI routes."""
        if path.startswith("/api/v1/"):
            return not path.startswith(self.proxied_prefixes)
        return path.startswith(AI_PREFIXES)

    def allowed_origin(self, request: web.BaseRequest) -> str | None:
        origin = request.headers.get("Origin")
        return origin if origin is not None and origin.lower() in self.origins and self.shares(request.path) else None


def is_preflight(request: web.BaseRequest) -> bool:
    return (request.method == "OPTIONS" and "Origin" in request.headers
            and "Access-Control-Request-Method" in request.headers)


def preflight(policy: BrowserPolicy, request: web.BaseRequest) -> web.Response | None:
    """The answer to a CORS preflight on one of our paths (None: not ours, let routing answer it):
    204 with the grant for an allowed origin; any other is refused (403)."""
    if not policy.shares(request.path):
        return None
    origin = policy.allowed_origin(request)
    if origin is None:
        raise Forbidden("this origin may not call tollgate from a browser", code="cors_origin_not_allowed")
    return web.Response(status=204, headers={
        "Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true",
        "Access-Control-Allow-Methods": ALLOWED_METHODS, "Access-Control-Allow-Headers": ALLOWED_HEADERS,
        "Access-Control-Max-Age": str(policy.max_age_s), "Vary": "Origin"})


def _vary_origin(values: Iterable[str]) -> str:
    names = [value.strip() for value in ",".join(values).split(",") if value.strip()]
    return ", ".join(dict.fromkeys([*names, "Origin"]))


def secure(policy: BrowserPolicy, request: web.BaseRequest, response: web.StreamResponse, own: bool) -> None:
    """Before a response goes out (`own`: tollgate's answer, not the proxied target's)."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    if policy.https:
        headers.setdefault("Strict-Transport-Security", HSTS)
    if not own:
        return
    if response.content_type == "text/html":
        for name, value in FRAME_DENIED.items():
            headers.setdefault(name, value)
    if policy.origins:
        origin = policy.allowed_origin(request)
        if origin is not None:
            headers["Access-Control-Allow-Origin"] = origin
            headers["Access-Control-Allow-Credentials"] = "true"
            headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        if policy.shares(request.path):  # caches must not hand one origin's answer to another
            headers["Vary"] = _vary_origin(headers.getall("Vary", []))
