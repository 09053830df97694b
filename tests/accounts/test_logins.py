"""Login sessions: rotating refresh tokens, reuse detection, logout ending the session, magic links."""

from __future__ import annotations

import time

import jwt

from tests.support.accounts import login, register
from tests.support.api import error_code, link_token
from tests.support.gateways import JWT_SECRET

# A login session ends for its access tokens too, not only its refresh tokens (ATTACK-2026-12-01 L1;
# decision 0014): reuse detection and logout revoke the session's family, and every access JWT of
# that family is refused from the next request on.


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


async def test_refresh_rotates_and_a_reused_refresh_token_ends_the_whole_session(gateway, database):
    user = await register(gateway, "erin@example.com")
    first = await gateway.post("/api/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert first.status == 200
    rotated = await first.json()
    assert rotated["refresh_token"] != user["refresh_token"]
    reused = await gateway.post("/api/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert (reused.status, await error_code(reused)) == (401, "refresh_token_reused")
    # The thief's reuse revoked the family: the rotated token is dead too.
    after = await gateway.post("/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert (after.status, await error_code(after)) == (401, "refresh_token_revoked")


async def test_a_refresh_token_expires_after_seven_days(gateway, database, clock):
    user = await register(gateway, "fay@example.com")
    clock.advance(7 * 24 * 3600 + 1)
    response = await gateway.post("/api/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert (response.status, await error_code(response)) == (401, "refresh_token_expired")


async def test_an_access_token_is_not_a_refresh_token(gateway, database):
    user = await register(gateway, "gus@example.com")
    response = await gateway.post("/api/v1/auth/refresh", json={"refresh_token": user["access_token"]})
    assert (response.status, await error_code(response)) == (401, "invalid_refresh_token")


async def test_logout_ends_the_access_token_and_the_refresh_session(gateway, database):
    user = await register(gateway, "ida@example.com")
    out = await gateway.post("/api/v1/auth/logout", headers=user["headers"],
                             json={"refresh_token": user["refresh_token"]})
    assert out.status == 200
    me = await gateway.get("/api/v1/auth/me", headers=user["headers"])
    assert (me.status, await error_code(me)) == (401, "jwt_revoked")
    refresh = await gateway.post("/api/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert (refresh.status, await error_code(refresh)) == (401, "refresh_token_revoked")


async def test_a_magic_link_logs_in_once(gateway, database, outbox):
    await register(gateway, "kim@example.com")
    response = await gateway.post("/api/v1/auth/magic-link", json={"email": "kim@example.com"})
    assert response.status == 202
    (mail,) = outbox.sent
    assert mail.to == "kim@example.com"
    token = link_token(mail)
    assert await database.fetchval("SELECT count(*) FROM magic_links WHERE token_hash = sha256($1::bytea)",
                                   token.encode()) == 1
    page = await gateway.get(f"/api/v1/auth/magic-link/verify?token={token}")
    assert page.status == 200 and token in await page.text()  # a GET shows a button, spends nothing
    first = await gateway.post("/api/v1/auth/magic-link/verify", json={"token": token})
    assert first.status == 200 and (await first.json())["token_type"] == "bearer"
    second = await gateway.post("/api/v1/auth/magic-link/verify", json={"token": token})
    assert (second.status, await error_code(second)) == (401, "invalid_magic_link")
    assert await database.fetchval("SELECT consumed_at IS NOT NULL FROM magic_links")


async def test_a_magic_link_expires_after_24_hours(gateway, database, outbox, clock):
    await register(gateway, "max@example.com")
    await gateway.post("/api/v1/auth/magic-link", json={"email": "max@example.com"})
    clock.advance(24 * 3600 + 1)
    response = await gateway.post("/api/v1/auth/magic-link/verify", json={"token": link_token(outbox.sent[0])})
    assert response.status == 401
    assert await database.fetchval("SELECT consumed_at FROM magic_links") is None


async def test_a_magic_link_for_an_unknown_email_looks_the_same_and_sends_nothing(gateway, database, outbox):
    response = await gateway.post("/api/v1/auth/magic-link", json={"email": "ghost@example.com"})
    assert response.status == 202 and outbox.sent == []
    assert await database.fetchval("SELECT count(*) FROM magic_links") == 0
