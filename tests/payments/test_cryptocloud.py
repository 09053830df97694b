"""CryptoCloud: invoices through the fake API v2, postbacks whose JWT is checked (secret, expiry,
invoice) before the info endpoint is asked; only paid or overpaid credit, the payment's fiat amount."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import orjson
import pytest

import ledger
from gateway.payments import recheck
from gateway.payments.cryptocloud import invoice_reference, verify_token
from gateway.payments.providers import CallbackRejected
from gateway.payments.resources import PAYMENTS
from tests.support.accounts import register
from tests.support.payments import CRYPTOCLOUD_SECRET, buy, deposits, history, payment_row

POSTBACK = "/api/v1/webhooks/cryptocloud"
TEN = 10 * ledger.MICRO_PER_CREDIT


@pytest.fixture
async def invoice(pay_gateway, fakes):
    """A user's 10-credit CryptoCloud payment: (user, payment JSON, the fake's invoice)."""
    user = await register(pay_gateway, "payer@example.com")
    payment = await buy(pay_gateway, user["headers"], credits="10", provider="cryptocloud")
    return user, payment, list(fakes.cryptocloud.invoices.values())[-1]


async def send(gateway, fields: dict, form: bool = False):
    if form:
        return await gateway.post(POSTBACK, data=fields)
    return await gateway.post(POSTBACK, data=orjson.dumps(fields), headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("text, reference", [("INV-ABCD1234", "INV-ABCD1234"), ("ABCD1234", "INV-ABCD1234"),
                                             ("inv-abcd1234", "INV-ABCD1234"), ("", None), ("INV-", None),
                                             ("ABC/1234", None), (12345678, None), ("٣٣٣٣٣", None)])
def test_an_invoice_id_is_read_with_or_without_its_prefix(text, reference):
    assert invoice_reference(text) == reference


def test_the_token_must_be_the_secrets_unexpired_and_for_the_invoice(fakes):
    now = time.time()
    token = fakes.cryptocloud.token("ABCD1234")
    verify_token(token, CRYPTOCLOUD_SECRET, "INV-ABCD1234", now)
    verify_token(fakes.cryptocloud.token("INV-ABCD1234", claim="uuid"), CRYPTOCLOUD_SECRET, "INV-ABCD1234", now)
    for bad in (fakes.cryptocloud.token("ABCD1234", secret="another-secret-0123456789abcdefgh"),
                fakes.cryptocloud.token("ABCD1234", expires_s=now - 1), fakes.cryptocloud.token("ZZZZ9999"),
                "not.a.jwt", None, 5):
        with pytest.raises(CallbackRejected):
            verify_token(bad, CRYPTOCLOUD_SECRET, "INV-ABCD1234", now)


async def test_an_invoice_carries_the_server_price_and_the_order(pay_gateway, database, invoice):
    _, payment, fake_invoice = invoice
    assert (fake_invoice["amount"], fake_invoice["fiat_currency"]) == ("10.00", "USD")
    assert fake_invoice["order_id"] == str(payment["payment_id"])
    assert (await payment_row(database, payment["payment_id"]))["provider_reference"] == fake_invoice["uuid"]


@pytest.mark.parametrize("form", [False, True])
async def test_a_paid_postback_credits_once(pay_gateway, database, fakes, invoice, form):
    user, payment, fake_invoice = invoice
    fake_invoice["status"] = "paid"
    fields = fakes.cryptocloud.postback(fake_invoice)
    for _ in range(3):
        response = await send(pay_gateway, fields, form)
        assert response.status == 200, await response.text()
    assert await deposits(database, user["id"]) == TEN
    assert (await payment_row(database, payment["payment_id"]))["status"] == "paid"


async def test_postbacks_at_once_credit_once(pay_gateway, database, fakes, invoice):
    user, _, fake_invoice = invoice
    fake_invoice["status"] = "paid"
    responses = await asyncio.gather(*(send(pay_gateway, fakes.cryptocloud.postback(fake_invoice))
                                       for _ in range(10)))
    assert [r.status for r in responses] == [200] * 10
    assert await deposits(database, user["id"]) == TEN


async def test_an_overpaid_invoice_credits_the_payments_own_amount(pay_gateway, database, fakes, invoice):
    user, _, fake_invoice = invoice
    answer = await (await pay_gateway.session.get(fake_invoice["link"] + "?status=overpaid")).json()
    assert answer["postback"]["status"] == 200
    assert await deposits(database, user["id"]) == TEN


@pytest.mark.parametrize("forge", ["another secret", "expired", "another invoice", "no token"])
async def test_a_postback_with_a_bad_token_is_400_and_credits_nothing(pay_gateway, database, fakes, invoice, forge):
    user, payment, fake_invoice = invoice
    fake_invoice["status"] = "paid"
    invoice_id = fake_invoice["uuid"].removeprefix("INV-")
    token = {"another secret": fakes.cryptocloud.token(invoice_id, secret="another-secret-0123456789abcdefgh"),
             "expired": fakes.cryptocloud.token(invoice_id, expires_s=time.time() - 1),
             "another invoice": fakes.cryptocloud.token("ZZZZ9999")}.get(forge)
    fields = fakes.cryptocloud.postback(fake_invoice, token)
    if forge == "no token":
        del fields["token"]
    response = await send(pay_gateway, fields)
    assert response.status == 400
    assert await deposits(database, user["id"]) == 0
    assert (await payment_row(database, payment["payment_id"]))["status"] == "pending"


@pytest.mark.parametrize("status", ["created", "partial"])
async def test_a_postback_the_info_endpoint_calls_unpaid_credits_nothing(pay_gateway, database, fakes, invoice,
                                                                           status):
    user, payment, fake_invoice = invoice
    fake_invoice["status"] = status  # the postback says success; the provider's own record does not
    response = await send(pay_gateway, fakes.cryptocloud.postback(fake_invoice))
    assert (response.status, (await response.json())["status"]) == (200, "pending")
    assert await deposits(database, user["id"]) == 0


async def test_a_postback_for_an_invoice_of_another_amount_credits_nothing(pay_gateway, database, fakes, invoice):
    user, payment, fake_invoice = invoice
    fake_invoice.update(status="paid", amount_in_fiat="1.00")
    response = await send(pay_gateway, fakes.cryptocloud.postback(fake_invoice))
    assert (response.status, (await response.json())["error"]["code"]) == (400, "payment_mismatch")
    assert await deposits(database, user["id"]) == 0
    assert ("pending", "rejected:postback:paid") in await history(database, payment["payment_id"])


async def test_a_canceled_invoice_fails_the_payment(pay_gateway, database, fakes, invoice):
    _, payment, fake_invoice = invoice
    await pay_gateway.session.get(fake_invoice["link"] + "?status=canceled")
    assert (await payment_row(database, payment["payment_id"]))["status"] == "failed"


async def test_an_invoice_whose_postback_is_lost_is_settled_by_the_recheck(pay_gateway_factory, database, fakes):
    gateway = await pay_gateway_factory(payment_recheck_delay_s=0.05, payment_recheck_interval_s=0.05)
    user = await register(gateway, "payer@example.com")
    payment = await buy(gateway, user["headers"], credits="10", provider="cryptocloud")
    await gateway.session.get(list(fakes.cryptocloud.invoices.values())[-1]["link"] + "?deliver=0")
    for _ in range(100):
        if await deposits(database, user["id"]):
            break
        await asyncio.sleep(0.05)
    assert await deposits(database, user["id"]) == TEN
    assert ("paid", "paid") in await history(database, payment["payment_id"])


@pytest.mark.parametrize("amount", ["sNaN", "NaN", "Infinity"])
async def test_an_invoice_amount_that_is_no_number_is_the_providers_failure(pay_gateway, database, fakes, invoice,
                                                                             amount):
    """A signalling NaN made the amount comparison raise: a 500 to the postback and, in the re-check
    task, an exception that ended the task for good."""
    user, payment, fake_invoice = invoice
    fake_invoice.update(status="paid", amount_in_fiat=amount)
    response = await send(pay_gateway, fakes.cryptocloud.postback(fake_invoice))
    assert (response.status, (await response.json())["error"]["code"]) == (502, "provider_error")
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
    assert await recheck.recheck_once(pay_gateway.app[PAYMENTS], later) == 0
    assert await deposits(database, user["id"]) == 0
    assert (await payment_row(database, payment["payment_id"]))["status"] == "pending"
