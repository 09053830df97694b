"""The login door's brakes (ATTACK-2026-12-01 L7): per-address windows, per-email failure pauses."""

from __future__ import annotations

import pytest

from tests.support.accounts import register
from tests.support.api import error_code

LOGIN = "/api/v1/auth/login"
RIGHT, WRONG = "correct horse battery", "wrong horse battery"


def from_address(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def attempt(gateway, email: str, password: str, address: str) -> tuple[int, str | None]:
    response = await gateway.post(LOGIN, json={"email": email, "password": password}, headers=from_address(address))
    body = await response.json()
    return response.status, (body.get("error") or {}).get("code")


@pytest.fixture
async def behind_proxy(gateway_factory):
    """A gateway that takes the client address from X-Forwarded-For, so a test can be many clients."""
    return await gateway_factory(trust_forwarded=True)


async def test_the_owner_logs_in_from_their_address_while_the_guessing_one_is_paused(behind_proxy, database):
    await register(behind_proxy, "dave@example.com")
    for _ in range(10):
        assert await attempt(behind_proxy, "dave@example.com", WRONG, "203.0.113.7") == (401, "invalid_credentials")
    assert await attempt(behind_proxy, "dave@example.com", RIGHT, "203.0.113.7") == (429, "too_many_attempts")
    assert (await attempt(behind_proxy, "dave@example.com", RIGHT, "198.51.100.2"))[0] == 200


async def test_guessing_from_many_addresses_pauses_each_that_failed_but_not_the_owner(gateway_factory, database):
    gateway = await gateway_factory(trust_forwarded=True, login_failures_per_email_max=20)
    await register(gateway, "erin@example.com")
    for address in ("203.0.113.1", "203.0.113.2"):
        for _ in range(10):
            await attempt(gateway, "erin@example.com", WRONG, address)
    # The email's count is reached: a new guessing address gets one try, then waits too.
    assert await attempt(gateway, "erin@example.com", WRONG, "203.0.113.3") == (401, "invalid_credentials")
    assert await attempt(gateway, "erin@example.com", RIGHT, "203.0.113.3") == (429, "too_many_attempts")
    assert (await attempt(gateway, "erin@example.com", RIGHT, "198.51.100.9"))[0] == 200


async def test_a_correct_password_clears_its_own_addresses_failures(behind_proxy, database):
    await register(behind_proxy, "fay@example.com")
    for _ in range(9):
        await attempt(behind_proxy, "fay@example.com", WRONG, "198.51.100.4")
    assert (await attempt(behind_proxy, "fay@example.com", RIGHT, "198.51.100.4"))[0] == 200
    for _ in range(9):
        assert (await attempt(behind_proxy, "fay@example.com", WRONG, "198.51.100.4"))[0] == 401
    assert (await attempt(behind_proxy, "fay@example.com", RIGHT, "198.51.100.4"))[0] == 200


async def test_one_address_gets_so_many_sign_in_requests_a_minute(gateway_factory, database, clock):
    gateway = await gateway_factory(trust_forwarded=True, auth_ip_limit_per_min=5)
    here = from_address("203.0.113.50")
    calls = [("/api/v1/auth/login", {"email": "a@example.com", "password": WRONG}),
             ("/api/v1/auth/register", {"email": "b@example.com", "username": "bbb", "password": RIGHT,
                                        "full_name": "B"}),
             ("/api/v1/auth/magic-link", {"email": "b@example.com"}),
             ("/api/v1/auth/login", {"email": "c@example.com", "password": WRONG}),
             ("/api/v1/auth/login", {"email": "d@example.com", "password": WRONG})]
    assert [(await gateway.post(path, json=body, headers=here)).status for path, body in calls] == \
        [401, 201, 202, 401, 401]
    for path, body in calls[:3]:
        refused = await gateway.post(path, json=body, headers=here)
        assert refused.status == 429 and (await refused.json())["error"]["code"] == "too_many_requests"
        assert 1 <= int(refused.headers["Retry-After"]) <= 61
    users_before = await database.fetchval("SELECT count(*) FROM users")
    assert (await gateway.post(LOGIN, json=calls[0][1], headers=from_address("198.51.100.1"))).status == 401
    clock.advance(61)
    assert (await gateway.post(LOGIN, json=calls[0][1], headers=here)).status == 401
    assert await database.fetchval("SELECT count(*) FROM users") == users_before


async def test_spraying_passwords_over_many_emails_is_cut_off_by_default(gateway, database):
    """The report's spray: 200 emails from one address were all answered."""
    statuses = [(await gateway.post(LOGIN, json={"email": f"user{n}@example.com", "password": WRONG})).status
                for n in range(40)]
    assert statuses == [401] * 30 + [429] * 10


async def test_an_ipv6_client_is_its_whole_slash_64(gateway_factory, database):
    gateway = await gateway_factory(trust_forwarded=True, auth_ip_limit_per_min=2)
    body = {"email": "x@example.com", "password": WRONG}
    statuses = [(await gateway.post(LOGIN, json=body, headers=from_address(f"2001:db8:1:2::{n}"))).status
                for n in range(1, 4)]
    assert statuses == [401, 401, 429]
    assert (await gateway.post(LOGIN, json=body, headers=from_address("2001:db8:1:3::1"))).status == 401


async def test_ten_failed_logins_pause_that_email(gateway, database):
    await register(gateway, "dave@example.com")
    for _ in range(10):
        wrong = await gateway.post("/api/v1/auth/login", json={"email": "dave@example.com", "password": "nope nope"})
        assert wrong.status == 401
    right = await gateway.post("/api/v1/auth/login",
                               json={"email": "dave@example.com", "password": "correct horse battery"})
    assert (right.status, await error_code(right)) == (429, "too_many_attempts")
    assert right.headers["Retry-After"] == "900"
