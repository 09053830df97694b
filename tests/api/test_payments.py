"""/api/v1/currency/purchase and /api/v1/payments end to end: the server's price, bad input refused
with nothing written, a provider switched off says so, your own payments only (admins see all)."""

from __future__ import annotations

import pytest

from tests.support.accounts import admin, register
from tests.support.api import error_of, row_counts
from tests.support.payments import PURCHASE, buy

PAYMENTS_TABLES = ("users", "payments", "payment_history", "transfers", "audit_log")


async def counts(database) -> dict[str, int]:
    return {**await row_counts(database),
            **{t: await database.fetchval(f"SELECT count(*) FROM {t}") for t in ("payments", "payment_history")}}


async def test_credits_are_priced_by_the_server_in_the_chosen_currency(pay_gateway, database):
    user = await register(pay_gateway, "payer@example.com")
    eur = await buy(pay_gateway, user["headers"], credits="12.5", provider="stripe", currency="EUR")
    assert (eur["amount"], eur["currency"], eur["credits"], eur["status"]) == ("11.25", "EUR", "12.5", "pending")
    tiny = await buy(pay_gateway, user["headers"], credits="0.000001", provider="cryptocloud")
    assert (tiny["amount"], tiny["currency"]) == ("0.01", "USD")


async def test_a_bundle_is_priced_from_its_credits(pay_gateway, database):
    user = await register(pay_gateway, "payer@example.com")
    bundle = await database.fetchrow("SELECT id, price_micro FROM bundles ORDER BY id LIMIT 1")
    payment = await buy(pay_gateway, user["headers"], bundle_id=bundle["id"], provider="stripe")
    assert (payment["credits"], payment["amount"], payment["bundle_id"]) == ("81", "81.00", bundle["id"])


BAD_PURCHASES = [
    ({"credits": 10, "provider": "stripe"}, 400, "invalid_field"),
    ({"credits": 10.5, "provider": "stripe"}, 400, "invalid_field"),
    ({"credits": "0", "provider": "stripe"}, 400, "invalid_amount"),
    ({"credits": "-5", "provider": "stripe"}, 400, "invalid_amount"),
    ({"credits": "1000001", "provider": "stripe"}, 400, "invalid_amount"),
    ({"credits": "99999999999", "provider": "stripe"}, 400, "invalid_amount"),
    ({"credits": "1e3", "provider": "stripe"}, 400, "invalid_amount"),
    ({"credits": "1.0000001", "provider": "stripe"}, 400, "invalid_amount"),
    ({"credits": "NaN", "provider": "stripe"}, 400, "invalid_amount"),
    ({"credits": "5\x00", "provider": "stripe"}, 400, "invalid_field"),
    ({"credits": "5", "provider": "paypal"}, 400, "invalid_provider"),
    ({"credits": "5", "provider": "stripe\x00"}, 400, "invalid_field"),
    ({"credits": "5", "provider": ["stripe"]}, 400, "invalid_field"),
    ({"credits": "5"}, 400, "missing_field"),
    ({"provider": "stripe"}, 400, "invalid_purchase"),
    ({"credits": "5", "bundle_id": 1, "provider": "stripe"}, 400, "invalid_purchase"),
    ({"bundle_id": 999999, "provider": "stripe"}, 404, "bundle_not_found"),
    ({"bundle_id": -1, "provider": "stripe"}, 404, "bundle_not_found"),
    ({"bundle_id": 2**70, "provider": "stripe"}, 400, "invalid_field"),  # past 64 bits JSON reads a float
    ({"bundle_id": "1", "provider": "stripe"}, 400, "invalid_field"),
    ({"credits": "5", "provider": "stripe", "currency": "XYZ"}, 400, "invalid_currency"),
    ({"credits": "5", "provider": "stripe", "currency": 5}, 400, "invalid_field"),
    ({"credits": "5", "provider": "stripe", "amount": "0.01"}, 400, "unknown_field"),
    ({"credits": "5", "provider": "stripe", "email": "a@example.com"}, 400, "invalid_field"),
]


@pytest.mark.parametrize("body, status, code", BAD_PURCHASES)
async def test_a_bad_purchase_is_refused_and_writes_nothing(pay_gateway, database, body, status, code):
    user = await register(pay_gateway, "payer@example.com")
    before = await counts(database)
    response = await pay_gateway.post(PURCHASE, headers=user["headers"], json=body)
    assert await error_of(response, status) == code
    assert await counts(database) == before


@pytest.mark.parametrize("raw, content_type, code", [
    (b'{"credits": "\xff", "provider": "stripe"}', "application/json", "invalid_json"),
    (b'{"credits": "5", "provider": "stripe", "credits": "0"}', "application/json", "invalid_amount"),
    (b'[1]', "application/json", "invalid_json"),
    (b'credits=5&provider=stripe', "application/x-www-form-urlencoded", "invalid_json"),
])
async def test_broken_bodies_are_refused_and_write_nothing(pay_gateway, database, raw, content_type, code):
    user = await register(pay_gateway, "payer@example.com")
    before = await counts(database)
    response = await pay_gateway.post(PURCHASE, headers={**user["headers"], "Content-Type": content_type}, data=raw)
    assert await error_of(response, 400) == code
    assert await counts(database) == before


@pytest.mark.parametrize("body, code", [({"credits": "5", "provider": "robokassa"}, "missing_field"),
                                        ({"credits": "5", "provider": "robokassa", "email": "not an email"},
                                         "invalid_email"),
                                        ({"credits": "5", "provider": "robokassa", "email": "a\u200b@example.com"},
                                         "invalid_email")])
async def test_a_guest_must_name_a_valid_email(pay_gateway, database, body, code):
    before = await counts(database)
    assert await error_of(await pay_gateway.post(PURCHASE, json=body), 400) == code
    assert await counts(database) == before


async def test_a_bad_bearer_is_401_not_a_guest_purchase(pay_gateway, database):
    response = await pay_gateway.post(PURCHASE, headers={"Authorization": "Bearer nope"},
                                      json={"credits": "5", "provider": "stripe"})
    assert await error_of(response, 401) == "invalid_jwt"
    assert await database.fetchval("SELECT count(*) FROM payments") == 0


async def test_a_provider_without_settings_is_409_provider_disabled(gateway, database):
    user = await register(gateway, "payer@example.com")
    for provider in ("stripe", "cryptocloud", "robokassa"):
        response = await gateway.post(PURCHASE, headers=user["headers"], json={"credits": "5", "provider": provider})
        assert await error_of(response, 409) == "provider_disabled"
        webhook = "/api/v1/webhooks/" + {"robokassa": "robokassa/result"}.get(provider, provider)
        assert await error_of(await gateway.post(webhook, data=b"{}"), 409) == "provider_disabled"
    assert await database.fetchval("SELECT count(*) FROM payments") == 0


async def test_users_see_their_own_payments_and_admins_see_all(pay_gateway, database):
    ann = await register(pay_gateway, "ann@example.com")
    bob = await register(pay_gateway, "bob@example.com")
    mine = await buy(pay_gateway, ann["headers"], credits="5", provider="stripe")
    theirs = await buy(pay_gateway, bob["headers"], credits="7", provider="cryptocloud")
    listing = await (await pay_gateway.get("/api/v1/payments", headers=ann["headers"])).json()
    assert [p["payment_id"] for p in listing["items"]] == [mine["payment_id"]] and listing["total"] == 1
    for payment_id in (theirs["payment_id"], "999999", "abc", "-1", "1" * 30, "%00"):
        response = await pay_gateway.get(f"/api/v1/payments/{payment_id}", headers=ann["headers"])
        assert await error_of(response, 404) in ("payment_not_found", "not_found")
    one = await (await pay_gateway.get(f"/api/v1/payments/{mine['payment_id']}", headers=ann["headers"])).json()
    assert one["history"][0]["event"] == "created"
    headers = await admin(pay_gateway, database)
    everyone = await (await pay_gateway.get("/api/v1/payments?status=pending", headers=headers)).json()
    assert {p["payment_id"] for p in everyone["items"]} == {mine["payment_id"], theirs["payment_id"]}
    assert (await pay_gateway.get(f"/api/v1/payments/{theirs['payment_id']}", headers=headers)).status == 200
    actions = [r["action"] for r in await database.fetch("SELECT action FROM audit_log WHERE action LIKE 'payment%'")]
    assert actions.count("payment.create") == 2 and "payments.list" in actions and "payment.view" in actions


@pytest.mark.parametrize("query", ["status=stolen", "limit=0", "limit=abc", "skip=-1"])
async def test_bad_list_queries_are_400(pay_gateway, query):
    user = await register(pay_gateway, "payer@example.com")
    response = await pay_gateway.get(f"/api/v1/payments?{query}", headers=user["headers"])
    assert await error_of(response, 400) == "invalid_query"


async def test_the_return_pages_only_tell(pay_gateway):
    for outcome in ("success", "fail"):
        response = await pay_gateway.get(f"/api/v1/payments/return/{outcome}")
        assert response.status == 200 and "text/html" in response.headers["Content-Type"]
    assert (await pay_gateway.get("/api/v1/payments/return/elsewhere")).status == 404
