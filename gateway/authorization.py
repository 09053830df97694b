"""Authorization: what an authenticated principal may reach (token scopes)."""

from __future__ import annotations

from gateway.call import Principal
from gateway.errors import Forbidden

CERTIFICATES_PREFIX = "/certificates/"


def has_dot_segments(path: str) -> bool:
    return any(segment in (".", "..") for segment in path.split("/"))


def authorize_target_path(principal: Principal, path: str) -> None:
    """`path` is the decoded target path; certificates_only tokens reach /certificates/* only."""
    if principal.scope == "full":
        return
    if principal.scope == "certificates_only":
        if path.startswith(CERTIFICATES_PREFIX) and not has_dot_segments(path):
            return
        raise Forbidden("this token may only reach /certificates/*", code="scope_denied")
    raise Forbidden(f"unknown scope {principal.scope!r}", code="scope_denied")
