"""JWT access tokens: forged, unsigned and expired ones are refused."""

from __future__ import annotations

import jwt

from gateway.accounts import users
from tests.support.accounts import ADMIN, admin_headers, register
from tests.support.gateways import JWT_SECRET


async def test_forged_and_none_jwts_are_401(gateway, database):
    user_id = await users.ensure_admin(database, email=ADMIN["email"], password=ADMIN["password"])
    claims = {"sub": str(user_id), "role": "admin", "type": "access", "iat": 1, "exp": 4102444800}
    forged = jwt.encode(claims, "wrong-secret-" + "y" * 40, algorithm="HS256")
    unsigned = jwt.encode(claims, None, algorithm="none")
    for token in (forged, unsigned, "garbage", ""):
        response = await gateway.post("/api/v1/admin/tokens", headers={"Authorization": f"Bearer {token}"},
                                      json={"email": ADMIN["email"], "hours": 1})
        assert response.status == 401, token


async def test_an_expired_jwt_is_401(gateway, database, clock):
    headers = await admin_headers(gateway, database)
    clock.advance(1801)
    response = await gateway.post("/api/v1/admin/tokens", headers=headers,
                                  json={"email": ADMIN["email"], "hours": 1})
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "jwt_expired"


def forged(claims: dict, key: str = JWT_SECRET, algorithm: str = "HS256") -> dict:
    return {"Authorization": "Bearer " + jwt.encode(claims, key, algorithm=algorithm)}


async def test_expired_forged_and_alg_none_jwts_are_401(gateway, database, clock):
    user = await register(gateway, "hal@example.com")
    now = int(clock.now_s())
    good = {"sub": str(user["id"]), "type": "access", "iat": now, "exp": now + 60, "jti": "x" * 32}
    cases = {
        "wrong key": forged(good, key="not-the-secret-" + "y" * 40),
        "alg none": {"Authorization": "Bearer " + jwt.encode(good, None, algorithm="none")},
        "expired": forged({**good, "exp": now - 1}),
        "refresh as access": forged({**good, "type": "refresh"}),
        "string exp": forged({**good, "exp": "soon"}),
        "no sub": forged({k: v for k, v in good.items() if k != "sub"}),
        "no bearer": {"Authorization": user["access_token"]},
        "empty": {},
    }
    for name, headers in cases.items():
        response = await gateway.get("/api/v1/auth/me", headers=headers)
        assert response.status == 401, name
    assert (await gateway.get("/api/v1/auth/me", headers=forged(good))).status == 200
