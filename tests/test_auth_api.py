"""/api/v1/auth end to end: register, login, refresh rotation, logout, me, magic links, bad inputs."""

from __future__ import annotations

import re

import jwt
import pytest

from tests.conftest import JWT_SECRET, register

REGISTER = "/api/v1/auth/register"


def body(**changes) -> dict:
    return {"email": "bob@example.com", "username": "bob", "password": "long enough pw",
            "full_name": "Bob Builder", **changes}


async def user_count(database) -> int:
    return await database.fetchval("SELECT count(*) FROM users")


async def error_code(response) -> str:
    return (await response.json())["error"]["code"]


async def test_register_creates_a_client_with_an_account_a_referral_code_and_an_audit_entry(gateway, database):
    response = await gateway.post(REGISTER, json=body())
    assert response.status == 201
    user = await response.json()
    assert (user["email"], user["username"], user["role"], user["plan"]) == ("bob@example.com", "bob", "client", "free")
    assert re.fullmatch(r"[A-Z0-9]{12}", user["referral_code"])
    assert "password" not in str(user) and "hash" not in str(user)
    stored = await database.fetchval("SELECT password_hash FROM users WHERE id = $1", user["id"])
    assert stored.startswith("$argon2id$") and "long enough pw" not in stored
    assert await database.fetchval("SELECT count(*) FROM accounts WHERE user_id = $1", user["id"]) == 1
    assert await database.fetchval("SELECT action FROM audit_log WHERE target_id = $1", str(user["id"])) == "user.register"


@pytest.mark.parametrize("changes, code", [
    ({"email": "not-an-email"}, "invalid_email"),
    ({"email": 42}, "invalid_field"),
    ({"email": "a@" + "b" * 260 + ".com"}, "invalid_email"),
    ({"username": "x"}, "invalid_username"),
    ({"username": "has space"}, "invalid_username"),
    ({"password": "short"}, "invalid_password"),
    ({"password": "p" * 129}, "invalid_password"),
    ({"password": ["list"]}, "invalid_field"),
    ({"full_name": ""}, "invalid_full_name"),
    ({"full_name": None}, "missing_field"),
    ({"referral_code": "NOSUCHCODE12"}, "invalid_referral_code"),
    ({"referral_code": "bad code!"}, "invalid_referral_code"),
    ({"referral_code": 12}, "invalid_field"),
])
async def test_bad_registrations_are_400_and_create_nothing(gateway, database, changes, code):
    response = await gateway.post(REGISTER, json=body(**changes))
    assert (response.status, await error_code(response)) == (400, code)
    assert await user_count(database) == 0


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1,2]", b'"text"'])
async def test_a_register_body_that_is_not_a_json_object_is_400(gateway, database, raw):
    response = await gateway.post(REGISTER, data=raw, headers={"Content-Type": "application/json"})
    assert (response.status, await error_code(response)) == (400, "invalid_json")
    assert await user_count(database) == 0


async def test_a_taken_email_or_username_is_409_whatever_the_case(gateway, database):
    assert (await gateway.post(REGISTER, json=body())).status == 201
    same_email = await gateway.post(REGISTER, json=body(email="BOB@example.com", username="other"))
    same_name = await gateway.post(REGISTER, json=body(email="new@example.com", username="BOB"))
    assert (same_email.status, await error_code(same_email)) == (409, "email_taken")
    assert (same_name.status, await error_code(same_name)) == (409, "username_taken")
    assert await user_count(database) == 1


async def test_login_answers_the_token_pair_and_the_access_token_carries_no_email(gateway, database):
    user = await register(gateway, "carol@example.com")
    assert user["token_type"] == "bearer" and user["expires_in"] == 1800
    claims = jwt.decode(user["access_token"], JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == str(user["id"]) and claims["exp"] - claims["iat"] == 1800
    assert "carol" not in str(claims)
    refresh = jwt.decode(user["refresh_token"], JWT_SECRET, algorithms=["HS256"])
    assert refresh["type"] == "refresh" and refresh["exp"] - refresh["iat"] == 7 * 24 * 3600
    me = await gateway.get("/api/v1/auth/me", headers=user["headers"])
    assert (await me.json())["email"] == "carol@example.com"
    assert (await me.json())["balance"] == "0"


@pytest.mark.parametrize("credentials", [
    {"email": "carol@example.com", "password": "wrong password"},
    {"email": "nobody@example.com", "password": "correct horse battery"},
])
async def test_wrong_logins_are_401_without_saying_which_part_was_wrong(gateway, database, credentials):
    await register(gateway, "carol@example.com")
    response = await gateway.post("/api/v1/auth/login", json=credentials)
    assert (response.status, await error_code(response)) == (401, "invalid_credentials")


async def test_ten_failed_logins_pause_that_email(gateway, database):
    await register(gateway, "dave@example.com")
    for _ in range(10):
        assert (await gateway.post("/api/v1/auth/login", json={"email": "dave@example.com", "password": "nope nope"})).status == 401
    right = await gateway.post("/api/v1/auth/login", json={"email": "dave@example.com", "password": "correct horse battery"})
    assert (right.status, await error_code(right)) == (429, "too_many_attempts")
    assert right.headers["Retry-After"] == "900"


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


@pytest.mark.parametrize("token", ["", "garbage", 5])
async def test_malformed_refresh_tokens_are_refused(gateway, database, token):
    response = await gateway.post("/api/v1/auth/refresh", json={"refresh_token": token})
    assert response.status in (400, 401)


async def test_an_access_token_is_not_a_refresh_token(gateway, database):
    user = await register(gateway, "gus@example.com")
    response = await gateway.post("/api/v1/auth/refresh", json={"refresh_token": user["access_token"]})
    assert (response.status, await error_code(response)) == (401, "invalid_refresh_token")


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


async def test_logout_ends_the_access_token_and_the_refresh_session(gateway, database):
    user = await register(gateway, "ida@example.com")
    out = await gateway.post("/api/v1/auth/logout", headers=user["headers"],
                             json={"refresh_token": user["refresh_token"]})
    assert out.status == 200
    me = await gateway.get("/api/v1/auth/me", headers=user["headers"])
    assert (me.status, await error_code(me)) == (401, "jwt_revoked")
    refresh = await gateway.post("/api/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert (refresh.status, await error_code(refresh)) == (401, "refresh_token_revoked")


async def test_a_disabled_account_can_neither_log_in_nor_refresh(gateway, database):
    user = await register(gateway, "joe@example.com")
    await database.execute("UPDATE users SET is_active = false WHERE id = $1", user["id"])
    login = await gateway.post("/api/v1/auth/login", json={"email": "joe@example.com", "password": "correct horse battery"})
    refresh = await gateway.post("/api/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})
    me = await gateway.get("/api/v1/auth/me", headers=user["headers"])
    assert (login.status, refresh.status, me.status) == (401, 401, 401)


def link_token(mail) -> str:
    return re.search(r"token=([A-Za-z0-9_-]{64})", mail.text).group(1)


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


async def test_a_magic_link_can_be_used_from_the_form_button(gateway, database, outbox):
    await register(gateway, "lee@example.com")
    await gateway.post("/api/v1/auth/magic-link", json={"email": "lee@example.com"})
    response = await gateway.post("/api/v1/auth/magic-link/verify", data={"token": link_token(outbox.sent[0])})
    assert response.status == 200


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


@pytest.mark.parametrize("token", ["short", "x" * 64, "", 7])
async def test_unknown_or_malformed_magic_tokens_are_refused(gateway, database, token):
    response = await gateway.post("/api/v1/auth/magic-link/verify", json={"token": token})
    assert response.status in (400, 401)


async def test_the_development_sender_is_the_default_and_smtp_is_configurable():
    from gateway.accounts import mail
    from gateway.core.config import Settings

    assert isinstance(mail.sender_for(Settings()), mail.TerminalSender)  # `serve` refuses it: tests/test_mail.py
    assert isinstance(mail.sender_for(Settings(mail_sender="smtp")), mail.SmtpSender)
