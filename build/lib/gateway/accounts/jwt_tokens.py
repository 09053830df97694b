"""JWT access tokens for the JSON API: HS256, `sub` = user id, nothing personal inside."""

from __future__ import annotations

import uuid

import jwt

from gateway.core.errors import Unauthenticated

ALGORITHM = "HS256"


def issue_access(secret: str, *, user_id: int, role: str, now_s: float, ttl_s: int, family: str) -> str:
    """`fam` names the login session (the refresh-token family): ending the session ends this token."""
    claims = {"sub": str(user_id), "role": role, "type": "access", "iat": int(now_s),
              "exp": int(now_s) + ttl_s, "jti": uuid.uuid4().hex, "fam": family}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_access(secret: str, token: str, *, now_s: float) -> dict:
    try:
        # Expiry is checked below against the gateway clock (tests move it), not by pyjwt.
        # The algorithm list is fixed: "none" and asymmetric confusions are refused by pyjwt.
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM],
                            options={"require": ["exp", "iat", "sub"], "verify_exp": False, "verify_iat": False})
    except Exception as error:  # noqa: BLE001 - any failure to decode attacker bytes means "not ours"
        # Not only PyJWTError: a non-UTF-8 header reaches here as surrogates and PyJWT's encode raises
        # UnicodeEncodeError (ATTACK-2026-12-01 M6). Whatever it is, the credential is invalid.
        raise Unauthenticated("invalid bearer token", code="invalid_jwt") from error
    if claims.get("type") != "access":
        raise Unauthenticated("not an access token", code="invalid_jwt")
    if _expiry(claims) <= now_s:
        raise Unauthenticated("bearer token expired", code="jwt_expired")
    return claims


def issue_refresh(secret: str, *, user_id: int, jti: str, family: str, now_s: float, ttl_s: int) -> str:
    claims = {"sub": str(user_id), "type": "refresh", "fam": family, "iat": int(now_s),
              "exp": int(now_s) + ttl_s, "jti": jti}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_refresh(secret: str, token: str, *, now_s: float) -> dict:
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM],
                            options={"require": ["exp", "iat", "sub", "jti"], "verify_exp": False, "verify_iat": False})
    except Exception as error:  # noqa: BLE001 - as in decode_access
        raise Unauthenticated("invalid refresh token", code="invalid_refresh_token") from error
    if claims.get("type") != "refresh" or not isinstance(claims.get("jti"), str):
        raise Unauthenticated("not a refresh token", code="invalid_refresh_token")
    if _expiry(claims) <= now_s:
        raise Unauthenticated("refresh token expired", code="refresh_token_expired")
    return claims


def _expiry(claims: dict) -> float:
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        raise Unauthenticated("invalid token expiry", code="invalid_jwt")
    return float(exp)
