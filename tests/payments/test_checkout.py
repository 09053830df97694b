"""Starting a payment: priced by the server, recorded before the provider is asked, failed when it refuses."""

from __future__ import annotations

import pytest

from gateway.core.config import Settings
from gateway.core.errors import BadRequest
from gateway.payments.checkout import currency_for
from tests.support.accounts import register
from tests.support.payments import PURCHASE, history

SETTINGS = Settings(credit_prices="USD=1.00,RUB=95.00")


@pytest.mark.parametrize("provider, requested, currency", [("stripe", None, "USD"), ("stripe", "RUB", "RUB"),
                                                           ("robokassa", None, "RUB"), ("cryptocloud", None, "USD")])
def test_the_currency_is_the_asked_one_or_the_providers_default(provider, requested, currency):
    assert currency_for(SETTINGS, provider, requested) == currency


@pytest.mark.parametrize("provider, requested", [("stripe", "GBP"), ("robokassa", "USD"), ("stripe", "usd")])
def test_an_unpriced_or_unaccepted_currency_is_refused(provider, requested):
    with pytest.raises(BadRequest):
        currency_for(SETTINGS, provider, requested)


async def test_a_provider_that_refuses_leaves_the_payment_failed_and_credits_nothing(pay_gateway, database, fakes):
    fakes.stripe.api_key = "sk_rotated"  # the gateway's key no longer works
    user = await register(pay_gateway, "payer@example.com")
    response = await pay_gateway.post(PURCHASE, headers=user["headers"], json={"credits": "10", "provider": "stripe"})
    assert (response.status, (await response.json())["error"]["code"]) == (502, "provider_error")
    row = await database.fetchrow("SELECT id, status FROM payments")
    assert row["status"] == "failed"
    assert await history(database, row["id"]) == [("pending", "created"), ("failed", "provider_refused")]
    assert await database.fetchval("SELECT count(*) FROM transfers") == 0


async def test_an_unreachable_provider_is_a_502_in_the_api_shape(pay_gateway_factory, database):
    from devkit.embedded import free_port

    gateway = await pay_gateway_factory(stripe_base_url=f"http://127.0.0.1:{free_port()}")
    user = await register(gateway, "payer@example.com")
    response = await gateway.post(PURCHASE, headers=user["headers"], json={"credits": "10", "provider": "stripe"})
    assert response.status == 502
    assert set((await response.json())["error"]) == {"code", "message", "request_id"}


async def test_a_provider_answering_without_a_checkout_url_is_a_502(pay_gateway_factory, database, aiohttp_server):
    from aiohttp import web

    async def half_answer(request: web.Request) -> web.Response:
        return web.json_response({"id": "cs_test_no_url"})

    app = web.Application()
    app.router.add_post("/v1/checkout/sessions", half_answer)
    server = await aiohttp_server(app)
    gateway = await pay_gateway_factory(stripe_base_url=str(server.make_url("")).rstrip("/"))
    user = await register(gateway, "payer@example.com")
    response = await gateway.post(PURCHASE, headers=user["headers"], json={"credits": "10", "provider": "stripe"})
    assert (response.status, (await response.json())["error"]["code"]) == (502, "provider_error")
    assert await database.fetchval("SELECT status FROM payments") == "failed"
