"""/api/v1/webhooks/* with hostile input: every refusal is a 4xx in the API's error shape and
nothing is credited or changed (a refused callback with a good signature is recorded)."""

from __future__ import annotations

import gzip

import pytest

from tests.support.accounts import register
from tests.support.api import error_of
from tests.support.payments import buy

STRIPE, CRYPTOCLOUD, ROBOKASSA = ("/api/v1/webhooks/stripe", "/api/v1/webhooks/cryptocloud",
                                  "/api/v1/webhooks/robokassa/result")


async def state(database) -> tuple:
    return (await database.fetchval("SELECT count(*) FROM transfers"),
            await database.fetch("SELECT id, status FROM payments ORDER BY id"),
            await database.fetchval("SELECT count(*) FROM payment_history"))


@pytest.fixture
async def pending(pay_gateway, database):
    """One pending payment per provider."""
    user = await register(pay_gateway, "payer@example.com")
    for provider in ("stripe", "cryptocloud"):
        await buy(pay_gateway, user["headers"], credits="10", provider=provider)
    await buy(pay_gateway, credits="10", provider="robokassa", email="guest@example.com")


@pytest.mark.parametrize("path, headers, body, status, code", [
    (STRIPE, {}, b'{"type": "checkout.session.completed"}', 400, "invalid_signature"),
    (STRIPE, {"Stripe-Signature": "t=1,v1=00"}, b"", 400, "invalid_signature"),
    (STRIPE, {"Stripe-Signature": "t=1,v1=\u00ff"}, b"\xff\xfe", 400, "invalid_signature"),
    (STRIPE, {"Content-Encoding": "gzip"}, b"not gzip", 400, "invalid_content_encoding"),
    (STRIPE, {}, b"x" * (256 * 1024 + 1), 413, "payload_too_large"),
    (CRYPTOCLOUD, {"Content-Type": "application/json"}, b'{"invoice_id": "ABCD1234"}', 400, "invalid_signature"),
    (CRYPTOCLOUD, {"Content-Type": "application/json"}, b'{"invoice_id": 5, "token": "x"}', 400,
     "malformed_callback"),
    (CRYPTOCLOUD, {"Content-Type": "application/json"}, b'{"invoice_id": "\xff"}', 400, "invalid_json"),
    (CRYPTOCLOUD, {"Content-Type": "application/json"}, b'[]', 400, "invalid_json"),
    (CRYPTOCLOUD, {"Content-Type": "application/x-www-form-urlencoded"}, b"invoice_id=%FF&token=x", 400,
     "invalid_form"),
    (CRYPTOCLOUD, {"Content-Type": "application/x-www-form-urlencoded"}, b"invoice_id=A&invoice_id=B", 400,
     "invalid_form"),
    (ROBOKASSA, {"Content-Type": "application/x-www-form-urlencoded"}, b"OutSum=1&InvId=1", 400,
     "malformed_callback"),
    (ROBOKASSA, {"Content-Type": "application/x-www-form-urlencoded"},
     b"OutSum=1.00&InvId=1&SignatureValue=00", 400, "invalid_signature"),
    (ROBOKASSA, {"Content-Type": "application/x-www-form-urlencoded"},
     b"OutSum=1e3&InvId=1&SignatureValue=00", 400, "malformed_callback"),
    (ROBOKASSA, {"Content-Type": "application/x-www-form-urlencoded"},
     b"OutSum=1.00&InvId=1%00&SignatureValue=00", 400, "malformed_callback"),
    (ROBOKASSA, {"Content-Type": "application/x-www-form-urlencoded"},
     b"OutSum=1.00&InvId=1&InvId=2&SignatureValue=00", 400, "invalid_form"),
    (ROBOKASSA, {"Content-Type": "application/x-www-form-urlencoded"}, b"\xff\xfe", 400, "invalid_form"),
    (ROBOKASSA, {}, b"&".join(b"a%d=1" % n for n in range(100)), 400, "invalid_form"),
])
async def test_hostile_callbacks_are_4xx_and_change_nothing(pay_gateway, database, pending, path, headers, body,
                                                            status, code):
    before = await state(database)
    response = await pay_gateway.post(path, data=body, headers=headers)
    assert await error_of(response, status) == code
    assert await state(database) == before


@pytest.mark.parametrize("query", ["", "?OutSum=1", "?OutSum=1.00&InvId=1&SignatureValue=%FF",
                                   "?OutSum=1.00&InvId=99999999999999999999&SignatureValue=00"])
async def test_a_robokassa_result_by_get_is_checked_the_same(pay_gateway, database, pending, query):
    before = await state(database)
    response = await pay_gateway.get(ROBOKASSA + query)
    assert response.status == 400
    assert await state(database) == before


async def test_a_compressed_stripe_event_is_read_inflated(pay_gateway, database, fakes, pending):
    session = list(fakes.stripe.sessions.values())[-1]
    body = fakes.stripe.event("checkout.session.completed", {**session, "payment_status": "paid"})
    response = await pay_gateway.post(STRIPE, data=gzip.compress(body), headers={
        "Content-Encoding": "gzip", "Stripe-Signature": fakes.stripe.sign(body)})
    assert response.status == 200
    assert await database.fetchval("SELECT count(*) FROM transfers WHERE kind = 'deposit'") == 1


async def test_an_event_tollgate_does_not_act_on_is_acknowledged(pay_gateway, database, fakes, pending):
    body = fakes.stripe.event("customer.created", {"id": "cus_1"})
    response = await pay_gateway.post(STRIPE, data=body, headers={"Stripe-Signature": fakes.stripe.sign(body)})
    assert (response.status, (await response.json())["ignored"]) == (200, True)
