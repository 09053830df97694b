"""Authorization: what an authenticated principal may reach (token scopes, the target's base path)."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from gateway.core.call import Principal
from gateway.core.errors import Forbidden

CERTIFICATES_PREFIX = "/certificates/"


# Characters some servers treat as separators or decode again (Tomcat's `..;`, IIS's `\`,
# a second percent-decoding): a narrow scope refuses them instead of guessing the target's rules.
AMBIGUOUS_CHARACTERS = frozenset(";\\%")


def has_dot_segments(path: str) -> bool:
    return any(segment in (".", "..") for segment in path.split("/"))


def is_unambiguous(path: str) -> bool:
    return not has_dot_segments(path) and "//" not in path and not (set(path) & AMBIGUOUS_CHARACTERS)


# Percent-encoded slashes and backslashes, which a decoding target turns into separators.
ENCODED_SEPARATORS = ("%2f", "%5c")
DOT_SEGMENTS = frozenset((b".", b".."))


def stays_under_base(raw_tail: str) -> bool:
    """True when no target can read `raw_tail` (a raw path) as leaving the base path of the target URL.

    The tail goes out byte for byte, so the target decides what it means. A target that decodes
    and resolves dot segments as nginx does reads `..`, `%2e%2e`, `..%2f` or `..\\` as "one level
    up" (attack 2026-12-01, M1), and Tomcat reads `..;x` as `..`. Such a tail is refused for every
    scope: no path a client needs is spelled that way, and the refusal does not depend on how the
    target resolves.
    """
    if raw_tail and not raw_tail.startswith("/"):
        return False  # the tail must start a segment of its own, not extend the base path's last
    if "." not in raw_tail and "%" not in raw_tail and "\\" not in raw_tail:
        return True  # the common path: nothing that could spell a dot segment or a separator
    if "\\" in raw_tail or any(encoded in raw_tail.lower() for encoded in ENCODED_SEPARATORS):
        return False
    return not any(unquote_to_bytes(segment).split(b";", 1)[0] in DOT_SEGMENTS
                   for segment in raw_tail.split("/"))


def authorize_target_path(principal: Principal, path: str) -> None:
    """`path` is the decoded target path; certificates_only tokens reach /certificates/* only."""
    if principal.scope == "full":
        return
    if principal.scope == "certificates_only":
        if path.startswith(CERTIFICATES_PREFIX) and is_unambiguous(path):
            return
        raise Forbidden("this token may only reach /certificates/*", code="scope_denied")
    raise Forbidden(f"unknown scope {principal.scope!r}", code="scope_denied")
