"""Authorization: what an authenticated principal may reach (token scopes)."""

from __future__ import annotations

from gateway.call import Principal
from gateway.errors import Forbidden

CERTIFICATES_PREFIX = "/certificates/"


# Characters some servers treat as separators or decode again (Tomcat's `..;`, IIS's `\`,
# a second percent-decoding): a narrow scope refuses them instead of guessing the target's rules.
AMBIGUOUS_CHARACTERS = frozenset(";\\%")


def has_dot_segments(path: str) -> bool:
    return any(segment in (".", "..") for segment in path.split("/"))


def is_unambiguous(path: str) -> bool:
    return not has_dot_segments(path) and "//" not in path and not (set(path) & AMBIGUOUS_CHARACTERS)


def authorize_target_path(principal: Principal, path: str) -> None:
    """`path` is the decoded target path; certificates_only tokens reach /certificates/* only."""
    if principal.scope == "full":
        return
    if principal.scope == "certificates_only":
        if path.startswith(CERTIFICATES_PREFIX) and is_unambiguous(path):
            return
        raise Forbidden("this token may only reach /certificates/*", code="scope_denied")
    raise Forbidden(f"unknown scope {principal.scope!r}", code="scope_denied")
