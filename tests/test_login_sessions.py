"""A login session ends for its access tokens too, not only its refresh tokens (ATTACK-2026-12-01 L1;
decision 0014): reuse detection and logout revoke the session's family, and every access JWT of
that family is refused from the next request on."""

from __future__ import annotations

import time

import jwt

from tests.conftest import JWT_SECRET, login, register

ME = "/api/v1/auth/me"


async def me_status(gateway, access_token: str) -> tuple[int, str | None]:
    response = await gateway.get(ME, headers={"Authorization": f"Bearer {access_token}"})
    body = await response.json()
    return response.status, body.get("error", {}).get("code")


async def refresh(gateway, refresh_token: str):
    return await gateway.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})


async def test_reusing_a_refresh_token_ends_the_access_tokens_of_its_session(gateway, database):
    first = await register(gateway, "erin@example.com")
    rotated = await (await refresh(gateway, first["refresh_token"])).json()
    assert (await me_status(gateway, rotated["access_token"]))[0] == 200
    reused = await refresh(gateway, first["refresh_token"])
    assert reused.status == 401
    assert await me_status(gateway, rotated["access_token"]) == (401, "session_revoked")
    assert await me_status(gateway, first["access_token"]) == (401, "session_revoked")


async def test_another_login_of_the_same_user_is_not_ended_by_the_reuse(gateway, database):
    first = await register(gateway, "finn@example.com")
    other = await login(gateway, "finn@example.com")
    await refresh(gateway, first["refresh_token"])
    assert (await refresh(gateway, first["refresh_token"])).status == 401
    assert await me_status(gateway, other["access_token"]) == (200, None)


async def test_logout_with_the_refresh_token_ends_every_access_token_of_that_login(gateway, database):
    first = await register(gateway, "gail@example.com")
    rotated = await (await refresh(gateway, first["refresh_token"])).json()
    response = await gateway.post("/api/v1/auth/logout", json={"refresh_token": rotated["refresh_token"]},
                                  headers={"Authorization": f"Bearer {rotated['access_token']}"})
    assert response.status == 200
    assert await me_status(gateway, first["access_token"]) == (401, "session_revoked")


async def test_the_access_token_names_its_session(gateway, database):
    user = await register(gateway, "hal@example.com")
    access = jwt.decode(user["access_token"], JWT_SECRET, algorithms=["HS256"])
    refresh_claims = jwt.decode(user["refresh_token"], JWT_SECRET, algorithms=["HS256"])
    assert access["fam"] == refresh_claims["fam"]


async def test_an_access_token_from_before_sessions_were_named_still_works_until_it_expires(gateway, database):
    user = await register(gateway, "ivy@example.com")
    now = int(time.time())
    legacy = jwt.encode({"sub": str(user["id"]), "role": "client", "type": "access", "iat": now,
                         "exp": now + 600, "jti": "0" * 32}, JWT_SECRET, algorithm="HS256")
    assert await me_status(gateway, legacy) == (200, None)
