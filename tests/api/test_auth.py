"""/api/v1/auth end to end: register, login, me, refresh and magic-link requests, bad inputs."""

from __future__ import annotations

import re

import jwt
import pytest

from gateway.accounts import users
from tests.support.accounts import ADMIN, login, register
from tests.support.api import error_code, error_of, link_token
from tests.support.gateways import JWT_SECRET

REGISTER = "/api/v1/auth/register"


def body(**changes) -> dict:
    return {"email": "bob@example.com", "username": "bob", "password": "long enough pw",
            "full_name": "Bob Builder", **changes}


async def user_count(database) -> int:
    return await database.fetchval("SELECT count(*) FROM users")


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
    action = await database.fetchval("SELECT action FROM audit_log WHERE target_id = $1", str(user["id"]))
    assert action == "user.register"


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


@pytest.mark.parametrize("token", ["", "garbage", 5])
async def test_malformed_refresh_tokens_are_refused(gateway, database, token):
    response = await gateway.post("/api/v1/auth/refresh", json={"refresh_token": token})
    assert response.status in (400, 401)


async def test_a_disabled_account_can_neither_log_in_nor_refresh(gateway, database):
    user = await register(gateway, "joe@example.com")
    await database.execute("UPDATE users SET is_active = false WHERE id = $1", user["id"])
    login = await gateway.post("/api/v1/auth/login",
                               json={"email": "joe@example.com", "password": "correct horse battery"})
    refresh = await gateway.post("/api/v1/auth/refresh", json={"refresh_token": user["refresh_token"]})
    me = await gateway.get("/api/v1/auth/me", headers=user["headers"])
    assert (login.status, refresh.status, me.status) == (401, 401, 401)


async def test_a_magic_link_can_be_used_from_the_form_button(gateway, database, outbox):
    await register(gateway, "lee@example.com")
    await gateway.post("/api/v1/auth/magic-link", json={"email": "lee@example.com"})
    response = await gateway.post("/api/v1/auth/magic-link/verify", data={"token": link_token(outbox.sent[0])})
    assert response.status == 200


@pytest.mark.parametrize("token", ["short", "x" * 64, "", 7])
async def test_unknown_or_malformed_magic_tokens_are_refused(gateway, database, token):
    response = await gateway.post("/api/v1/auth/magic-link/verify", json={"token": token})
    assert response.status in (400, 401)


async def test_login_answers_a_bearer_jwt_without_the_email(gateway, database):
    await users.ensure_admin(database, email=ADMIN["email"], password=ADMIN["password"])
    body = await (await gateway.post("/api/v1/auth/login", json=ADMIN)).json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 1800
    claims = jwt.decode(body["access_token"], JWT_SECRET, algorithms=["HS256"])
    assert ADMIN["email"] not in str(claims)


async def test_login_with_a_wrong_password_is_401(gateway, database):
    await users.ensure_admin(database, email=ADMIN["email"], password=ADMIN["password"])
    response = await gateway.post("/api/v1/auth/login", json={**ADMIN, "password": "nope"})
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "invalid_credentials"


async def test_login_with_bad_json_is_400(gateway, database):
    for body in (b"{not json", b"[1, 2]", b'{"email": 5, "password": "x"}', b'{"email": "a@b"}'):
        response = await gateway.post("/api/v1/auth/login", data=body,
                                      headers={"Content-Type": "application/json"})
        assert response.status == 400, body


async def test_with_mail_off_a_magic_link_request_is_404_and_creates_nothing(gateway_factory, database, outbox):
    gateway = await gateway_factory(mail_sender="none")
    await users.ensure_client(database, email="ann@example.com")
    response = await gateway.post("/api/v1/auth/magic-link", json={"email": "ann@example.com"})
    assert response.status == 404 and (await response.json())["error"]["code"] == "magic_link_disabled"
    assert await database.fetchval("SELECT count(*) FROM magic_links") == 0 and outbox.sent == []


@pytest.mark.parametrize("body, status, code", [
    ({"password": "short"}, 400, "invalid_password"),
    ({"password": "x" * 129}, 400, "invalid_password"),
    ({"password": 12345678}, 400, "invalid_field"),
    ({"password": "long enough\x00"}, 400, "invalid_field"),
    ({}, 400, "missing_field"),
    ({"password": "a new password"}, 401, "invalid_credentials"),  # an account with a password must give it
    ({"password": "a new password", "current_password": "wrong one!"}, 401, "invalid_credentials"),
])
async def test_setting_a_password_refuses_bad_input_and_changes_nothing(gateway, database, body, status, code):
    user = await register(gateway, "setter@example.com")
    stored = await database.fetchval("SELECT password_hash FROM users WHERE id = $1", user["id"])
    response = await gateway.post("/api/v1/auth/password", headers=user["headers"], json=body)
    assert await error_of(response, status) == code
    assert await database.fetchval("SELECT password_hash FROM users WHERE id = $1", user["id"]) == stored
    assert (await gateway.post("/api/v1/auth/password", json={"password": "a new password"})).status == 401


async def test_an_account_changes_its_password_with_the_current_one(gateway, database):
    user = await register(gateway, "setter@example.com")
    response = await gateway.post("/api/v1/auth/password", headers=user["headers"],
                                  json={"password": "a new password", "current_password": "correct horse battery"})
    assert response.status == 200
    assert (await login(gateway, "setter@example.com", "a new password"))["access_token"]
