"""JWT access tokens for the JSON API: HS256, `sub` = user id, nothing personal inside."""

from __future__ import annotations

import uuid

import jwt

from gateway.errors import Unauthenticated

ALGORITHM = "HS256"


def issue_access(secret: str, *, user_id: int, role: str, now_s: float, ttl_s: int) -> str:
    claims = {"sub": str(user_id), "role": role, "type": "access", "iat": int(now_s),
              "exp": int(now_s) + ttl_s, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_access(secret: str, token: str, *, now_s: float) -> dict:
    try:
        # The algorithm list is fixed: "none" and asymmetric confusions are refused by pyjwt.
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM],
                            options={"require": ["exp", "iat", "sub"], "verify_exp": False})
    except jwt.PyJWTError as error:
        raise Unauthenticated("invalid bearer token", code="invalid_jwt") from error
    if claims.get("type") != "access":
        raise Unauthenticated("not an access token", code="invalid_jwt")
    if int(claims["exp"]) <= now_s:
        raise Unauthenticated("bearer token expired", code="jwt_expired")
    return claims
