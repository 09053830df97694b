"""The desktop path's browser-session cookie settings (decision 0020), checked at start-up."""

from __future__ import annotations

PREFIX = "TOLLGATE_"
# TOLLGATE_COOKIE_SECURE: None = auto (Secure when the public URL is https).
SECURE_VALUES = {"auto": None, "true": True, "1": True, "yes": True, "on": True,
                 "false": False, "0": False, "no": False, "off": False}


def is_secure(cookie_secure: str, public_url: str) -> bool:
    value = SECURE_VALUES[cookie_secure.strip().lower()]
    return public_url.lower().startswith("https://") if value is None else value


def problem(cookie_secure: str, cookie_samesite: str, public_url: str, session_ttl_s: int,
            link_ttl_s: int) -> str | None:
    """What is wrong with the cookie settings (for a ConfigError), or None."""
    if cookie_secure.strip().lower() not in SECURE_VALUES:
        return f"{PREFIX}COOKIE_SECURE must be auto, true or false"
    if cookie_samesite.strip().lower() not in ("lax", "strict", "none"):
        return f"{PREFIX}COOKIE_SAMESITE must be lax, strict or none"
    if cookie_samesite.strip().lower() == "none" and not is_secure(cookie_secure, public_url):
        return (f"{PREFIX}COOKIE_SAMESITE=none needs a Secure cookie (browsers refuse it "
                f"otherwise): set {PREFIX}COOKIE_SECURE=true or an https {PREFIX}PUBLIC_URL")
    if session_ttl_s <= 0 or link_ttl_s <= 0:
        return f"{PREFIX}BROWSER_SESSION_TTL_S and {PREFIX}BROWSER_LINK_TTL_S must be > 0"
    return None
