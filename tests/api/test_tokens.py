"""/api/v1/tokens end to end: buy, list and revoke access tokens."""

from __future__ import annotations

import datetime as dt

import pytest

import ledger
from tests.support.accounts import balance_of, deposit, login, proxy_headers, register
from tests.support.api import counts, error_code
from tests.support.purchases import PURCHASE


async def test_buying_a_token_charges_the_server_price_and_the_token_works_on_the_proxy(gateway, database, buyer):
    response = await gateway.post(PURCHASE, headers=buyer["headers"],
                                  json={"duration_hours": 24, "scope": "full", "price": "0.01"})
    assert response.status == 201, await response.text()
    bought = await response.json()
    assert bought["price"] == "18" and len(bought["tokens"]) == 1
    assert await balance_of(database, buyer["id"]) == 32 * ledger.MICRO_PER_CREDIT
    token = bought["tokens"][0]["token"]
    assert len(token) == 64
    stored = await database.fetchrow("SELECT price_micro, duration_hours, expires_at - created_at AS life "
                                     "FROM access_tokens WHERE id = $1", bought["tokens"][0]["id"])
    assert (stored["price_micro"], stored["duration_hours"], stored["life"]) == (18_000_000, 24, dt.timedelta(hours=24))
    proxied = await gateway.get("/api/v1/proxy/echo", headers=proxy_headers(token))
    assert proxied.status == 200
    revenue = await database.fetchval("SELECT credits_posted FROM accounts WHERE code = 'revenue'")
    assert revenue == 18_000_000


@pytest.mark.parametrize("hours, price", [(1, "1"), (12, "10"), (24, "18"), (168, "100"), (720, "300")])
async def test_each_duration_has_its_price(gateway, database, hours, price):
    user = await register(gateway, "rich@example.com")
    await deposit(database, user["id"], 300)
    response = await gateway.post(PURCHASE, headers=user["headers"], json={"duration_hours": hours})
    assert (response.status, (await response.json())["price"]) == (201, price)


@pytest.mark.parametrize("payload, code", [
    ({"duration_hours": 2}, "invalid_duration"),
    ({"duration_hours": 0}, "invalid_duration"),
    ({"duration_hours": -24}, "invalid_duration"),
    ({"duration_hours": 2**62}, "invalid_duration"),
    ({"duration_hours": "24"}, "invalid_field"),
    ({"duration_hours": 24.0}, "invalid_field"),
    ({"duration_hours": True}, "invalid_field"),
    ({}, "missing_field"),
    ({"duration_hours": 24, "scope": "admin"}, "invalid_scope"),
    ({"duration_hours": 24, "scope": 1}, "invalid_field"),
])
async def test_bad_purchases_are_400_and_move_nothing(gateway, database, buyer, payload, code):
    before = await counts(database)
    response = await gateway.post(PURCHASE, headers=buyer["headers"], json=payload)
    assert (response.status, await error_code(response)) == (400, code)
    assert await counts(database) == before
    assert await balance_of(database, buyer["id"]) == 50 * ledger.MICRO_PER_CREDIT


async def test_a_purchase_without_funds_is_402_and_changes_nothing(gateway, database):
    user = await register(gateway, "poor@example.com")
    await deposit(database, user["id"], 5)
    before = await counts(database)
    response = await gateway.post(PURCHASE, headers=user["headers"], json={"duration_hours": 12})
    assert (response.status, await error_code(response)) == (402, "insufficient_balance")
    assert await counts(database) == before
    assert await balance_of(database, user["id"]) == 5 * ledger.MICRO_PER_CREDIT


async def test_a_purchase_needs_a_login(gateway, database):
    assert (await gateway.post(PURCHASE, json={"duration_hours": 1})).status == 401


async def test_the_same_idempotency_key_buys_once(gateway, database, buyer):
    headers = {**buyer["headers"], "Idempotency-Key": "order-17"}
    first = await gateway.post(PURCHASE, headers=headers, json={"duration_hours": 12})
    again = await gateway.post(PURCHASE, headers=headers, json={"duration_hours": 12})
    assert (first.status, again.status) == (201, 200)
    first_body, again_body = await first.json(), await again.json()
    assert again_body["replayed"] and again_body["transfer_id"] == first_body["transfer_id"]
    assert again_body["tokens"][0]["id"] == first_body["tokens"][0]["id"]
    assert again_body["tokens"][0]["token"] is None  # shown once, never again
    assert await balance_of(database, buyer["id"]) == 40 * ledger.MICRO_PER_CREDIT
    other = await gateway.post(PURCHASE, headers=headers, json={"duration_hours": 24})
    assert (other.status, await error_code(other)) == (409, "idempotency_conflict")
    assert await balance_of(database, buyer["id"]) == 40 * ledger.MICRO_PER_CREDIT


@pytest.mark.parametrize("key", ["", "x" * 101, "has space", "ключ"])
async def test_a_malformed_idempotency_key_is_400(gateway, database, buyer, key):
    response = await gateway.post(PURCHASE, headers={**buyer["headers"], "Idempotency-Key": key},
                                  json={"duration_hours": 1})
    assert response.status == 400
    assert await balance_of(database, buyer["id"]) == 50 * ledger.MICRO_PER_CREDIT


async def test_my_tokens_lists_only_mine_and_only_active_ones_unless_asked(gateway, database, buyer, clock):
    other = await register(gateway, "other@example.com")
    await deposit(database, other["id"], 5)
    await gateway.post(PURCHASE, headers=other["headers"], json={"duration_hours": 1})
    short = await (await gateway.post(PURCHASE, headers=buyer["headers"], json={"duration_hours": 1})).json()
    long = await (await gateway.post(PURCHASE, headers=buyer["headers"], json={"duration_hours": 12})).json()
    clock.advance(2 * 3600)
    buyer = {**buyer, **await login(gateway, "buyer@example.com")}  # the first JWT has expired
    every = await (await gateway.get("/api/v1/tokens/my-tokens?active_only=false", headers=buyer["headers"])).json()
    active = await (await gateway.get("/api/v1/tokens/my-tokens?active_only=true", headers=buyer["headers"])).json()
    default = await (await gateway.get("/api/v1/tokens/my-tokens", headers=buyer["headers"])).json()
    assert [t["id"] for t in every["items"]] == [long["tokens"][0]["id"], short["tokens"][0]["id"]]
    assert [t["id"] for t in active["items"]] == [long["tokens"][0]["id"]]
    assert default["items"] == active["items"]  # the seed's default: active_only=true
    assert "token" not in every["items"][0] and every["items"][0]["price"] == "10"
    for query in ("active_only=maybe", "limit=0", "limit=1000", "skip=-1", "skip=x", "status=expired"):
        response = await gateway.get(f"/api/v1/tokens/my-tokens?{query}", headers=buyer["headers"])
        assert response.status == 400, query


async def test_revoking_refunds_the_unused_time_once(gateway, database, buyer, clock):
    bought = await (await gateway.post(PURCHASE, headers=buyer["headers"], json={"duration_hours": 12})).json()
    token, token_id = bought["tokens"][0]["token"], bought["tokens"][0]["id"]
    assert await balance_of(database, buyer["id"]) == 40 * ledger.MICRO_PER_CREDIT
    clock.advance(3 * 3600)  # a quarter used; the 3 h (and the test's milliseconds) cost four 1 h tokens
    buyer = {**buyer, **await login(gateway, "buyer@example.com")}
    response = await gateway.delete(f"/api/v1/tokens/{token_id}", headers=buyer["headers"])
    assert response.status == 200
    refund = await response.json()
    assert refund["refund"] == "6"  # not the 7.5 pro rata: decision 0014, tests/accounts/test_refunds.py
    assert await balance_of(database, buyer["id"]) == 46 * ledger.MICRO_PER_CREDIT
    again = await gateway.delete(f"/api/v1/tokens/{token_id}", headers=buyer["headers"])
    assert (again.status, await error_code(again)) == (409, "token_revoked")
    assert await database.fetchval("SELECT count(*) FROM transfers WHERE kind = 'refund'") == 1
    proxied = await gateway.get("/api/v1/proxy/echo", headers=proxy_headers(token))
    assert proxied.status == 401


async def test_another_users_token_is_404_and_stays_active(gateway, database, buyer):
    thief = await register(gateway, "thief@example.com")
    bought = await (await gateway.post(PURCHASE, headers=buyer["headers"], json={"duration_hours": 1})).json()
    token_id = bought["tokens"][0]["id"]
    for path in (f"/api/v1/tokens/{token_id}", "/api/v1/tokens/999999", "/api/v1/tokens/abc",
                 "/api/v1/tokens/-1", "/api/v1/tokens/99999999999999999999999"):
        response = await gateway.delete(path, headers=thief["headers"])
        assert (response.status, await error_code(response)) == (404, "token_not_found"), path
    assert await database.fetchval("SELECT revoked_at FROM access_tokens WHERE id = $1", token_id) is None


async def test_an_expired_token_cannot_be_revoked_for_a_refund(gateway, database, buyer, clock):
    bought = await (await gateway.post(PURCHASE, headers=buyer["headers"], json={"duration_hours": 1})).json()
    clock.advance(3601)
    fresh = await login(gateway, "buyer@example.com")
    response = await gateway.delete(f"/api/v1/tokens/{bought['tokens'][0]['id']}", headers=fresh["headers"])
    assert (response.status, await error_code(response)) == (409, "token_expired")
    assert await database.fetchval("SELECT count(*) FROM transfers WHERE kind = 'refund'") == 0
