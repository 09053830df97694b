"""Where the admin UI is served (decision 0027): on a listener of its own (TOLLGATE_ADMIN_LISTEN), so
that no page of the proxied target ever shares its origin; on the gateway's main origin only when
an operator asks for it (TOLLGATE_ADMIN_ON_MAIN_ORIGIN); otherwise nowhere. Checked when the
settings are built, precomputed at start-up, asked once per request by the middleware."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import web

if TYPE_CHECKING:
    from gateway.core.config import Settings

PREFIX = "/admin"
# The 404 of the main origin under /admin when no origin serves the admin UI.
OFF = ("the admin UI is off: give it a listener of its own (TOLLGATE_ADMIN_LISTEN=host:port) or, "
       "accepting that the proxied target's pages share its origin, set TOLLGATE_ADMIN_ON_MAIN_ORIGIN=true")


def is_admin_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def parse_listen(raw: str) -> tuple[str, int]:
    """'host:port' (an IPv6 host in brackets) -> (host, port); ValueError when it is not one."""
    parts = urlsplit("//" + raw.strip())
    port = parts.port  # a port that is not a number in 0..65535 raises ValueError here
    if not parts.hostname or not port or parts.path or parts.query or parts.fragment or parts.username:
        raise ValueError(raw)
    return parts.hostname, port


def parse_origin(raw: str) -> str:
    """'https://admin.example.com[/]' -> the origin it names; ValueError when it is not one."""
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username:
        raise ValueError(raw)
    _ = parts.port  # a malformed port raises ValueError
    return f"{parts.scheme}://{parts.netloc.lower()}"


def problems(settings: Settings, prefix: str) -> list[str]:
    """What is wrong with the admin UI's settings, each naming its variable (empty: nothing)."""
    found = []
    if settings.target_prefix and is_admin_path("/" + settings.target_prefix.strip("/")):
        found.append(f"{prefix}TARGET_PREFIX must not be {PREFIX} or under it: that is the admin UI's path")
    if settings.admin_listen:
        try:
            _, port = parse_listen(settings.admin_listen)
        except ValueError:
            return [f"{prefix}ADMIN_LISTEN must be host:port, not {settings.admin_listen!r}"]
        if port in (settings.port, settings.metrics_port):
            found.append(f"{prefix}ADMIN_LISTEN must use a port other than {prefix}PORT and {prefix}METRICS_PORT")
        if settings.admin_on_main_origin:
            found.append(f"{prefix}ADMIN_ON_MAIN_ORIGIN=true and {prefix}ADMIN_LISTEN contradict each other: "
                         "the admin UI is served on one origin")
    elif settings.admin_public_url:
        found.append(f"{prefix}ADMIN_PUBLIC_URL names the origin of {prefix}ADMIN_LISTEN, which is not set")
    if settings.admin_public_url:
        try:
            parse_origin(settings.admin_public_url)
        except ValueError:
            found.append(f"{prefix}ADMIN_PUBLIC_URL must be an origin (scheme://host[:port]), "
                         f"not {settings.admin_public_url!r}")
    return found


@dataclass(frozen=True, slots=True)
class AdminOrigin:
    """Precomputed from the settings at start-up."""

    port: int  # the admin UI's own listener; 0 = none
    on_main_origin: bool  # served on the main listener (only without a listener of its own)
    origin: str  # scheme://host[:port] of its pages as browsers see them: POSTs must come from there
    https: bool  # its cookies are Secure

    @classmethod
    def from_settings(cls, settings: Settings) -> AdminOrigin:
        if settings.admin_listen:
            host, port = parse_listen(settings.admin_listen)
            netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            origin = parse_origin(settings.admin_public_url or f"http://{netloc}")
            return cls(port, False, origin, origin.startswith("https://"))
        origin = parse_origin(_origin_of(settings.public_url))
        return cls(0, settings.admin_on_main_origin, origin, origin.startswith("https://"))

    @property
    def served(self) -> bool:
        return bool(self.port) or self.on_main_origin

    def serves(self, request: web.BaseRequest) -> bool:
        """Whether the listener the request came in on serves its path: the admin UI's own listener
        serves the admin UI only; the main listener serves it only when asked to."""
        admin_path = is_admin_path(request.path)
        if not self.port:
            return self.on_main_origin or not admin_path
        sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
        on_admin_listener = sockname is not None and sockname[1] == self.port
        return admin_path == on_admin_listener


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
