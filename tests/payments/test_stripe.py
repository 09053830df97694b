"""Stripe: Checkout Sessions through the fake Stripe API, webhooks signed by the official `stripe`
library's own signer (`stripe.WebhookSignature.generate_signature_header`), credited exactly once."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest
import stripe

import ledger
from gateway.payments import recheck
from gateway.payments.providers import CallbackRejected
from gateway.payments.resources import PAYMENTS
from gateway.payments.stripe import parse_event, verify_signature
from tests.support.accounts import register
from tests.support.payments import STRIPE_SECRET, available, buy, deposits, history, payment_row

WEBHOOK = "/api/v1/webhooks/stripe"
TEN = 10 * ledger.MICRO_PER_CREDIT


def signed(body: bytes, secret: str = STRIPE_SECRET, timestamp: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=timestamp)


@pytest.fixture
async def bought(pay_gateway, fakes):
    """A user who started a 10-credit Stripe payment: (user, payment JSON, the fake's session)."""
    user = await register(pay_gateway, "payer@example.com")
    payment = await buy(pay_gateway, user["headers"], credits="10", provider="stripe")
    return user, payment, list(fakes.stripe.sessions.values())[-1]


def completed(fakes, session: dict, *, paid: bool = True) -> bytes:
    session = {**session, "status": "complete", "payment_status": "paid" if paid else "unpaid",
               "payment_intent": "pi_test_1"}
    return fakes.stripe.event("checkout.session.completed", session)


async def post_event(gateway, body: bytes, signature: str | None = None):
    return await gateway.post(WEBHOOK, data=body, headers={"Content-Type": "application/json",
                                                           "Stripe-Signature": signature or signed(body)})


# -- the signature, as a table ---------------------------------------------------------------------

BODY = b'{"id": "evt_1", "type": "checkout.session.completed"}'
NOW = 1_900_000_000


@pytest.mark.parametrize("header, accepted", [
    (signed(BODY, timestamp=NOW), True),
    (signed(BODY, timestamp=NOW - 299), True),
    (signed(BODY, timestamp=NOW + 299), True),
    # Several v1 while a secret rolls: any one may match.
    (signed(BODY, "whsec_old", NOW) + "," + signed(BODY, timestamp=NOW).split(",")[1], True),
    (signed(BODY, timestamp=NOW) + ",v0=deadbeef", True),
    (signed(BODY, timestamp=NOW - 600), False),
    (signed(BODY, timestamp=NOW + 600), False),
    (signed(BODY, "whsec_another", NOW), False),
    (signed(BODY + b" ", timestamp=NOW), False),
    (signed(BODY, timestamp=NOW).replace("v1=", "v0="), False),
    (f"t={NOW}", False),
    ("", False),
    ("t=abc,v1=00", False),
    ("v1=" + signed(BODY, timestamp=NOW).split("v1=")[1], False),
    (f"t={NOW},v1=\udcff", False),
])
def test_the_signature_is_checked_as_stripe_does(header, accepted):
    try:
        verify_signature(BODY, header, STRIPE_SECRET, NOW)
    except CallbackRejected:
        assert not accepted
    else:
        assert accepted


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"type": 5}', b'{"type": "checkout.session.completed"}',
                                  b'{"type": "checkout.session.completed", "data": {"object": {"id": "cs_1"}}}',
                                  b'{"type": "charge.refunded", "data": {"object": {"amount": 5}}}'])
def test_a_malformed_event_is_refused_not_a_crash(body):
    with pytest.raises(CallbackRejected):
        parse_event(body)


def test_events_tollgate_does_not_act_on_are_ignored():
    assert parse_event(b'{"type": "customer.created", "data": {"object": {}}}').status == "ignored"


# -- end to end ------------------------------------------------------------------------------------

async def test_the_checkout_session_carries_the_server_price_and_the_payment(pay_gateway, database, fakes, bought):
    user, payment, session = bought
    assert (payment["status"], payment["amount"], payment["currency"], payment["credits"]) == \
        ("pending", "10.00", "USD", "10")
    assert payment["payment_url"] == session["url"]
    assert (session["amount_total"], session["currency"]) == (1000, "usd")
    assert session["client_reference_id"] == str(payment["payment_id"])
    row = await payment_row(database, payment["payment_id"])
    assert row["provider_reference"] == session["id"] and row["user_id"] == user["id"]


async def test_an_event_signed_by_the_official_library_credits_once(pay_gateway, database, fakes, bought):
    user, payment, session = bought
    response = await post_event(pay_gateway, completed(fakes, session))
    assert response.status == 200, await response.text()
    assert (await response.json())["status"] == "paid"
    assert await available(database, user["id"]) == TEN
    assert await history(database, payment["payment_id"]) == [("pending", "created"),
                                                              ("paid", "checkout.session.completed")]


async def test_the_same_event_replayed_five_times_credits_once(pay_gateway, database, fakes, bought):
    user, _, session = bought
    body = completed(fakes, session)
    for _ in range(5):
        response = await post_event(pay_gateway, body)
        assert response.status == 200
    assert await deposits(database, user["id"]) == TEN


async def test_the_same_event_twenty_times_at_once_credits_once(pay_gateway, database, fakes, bought):
    user, payment, session = bought
    body = completed(fakes, session)
    responses = await asyncio.gather(*(post_event(pay_gateway, body) for _ in range(20)))
    assert [r.status for r in responses] == [200] * 20
    assert await deposits(database, user["id"]) == TEN
    assert [status for status, _ in await history(database, payment["payment_id"])].count("paid") == 1


async def test_async_payment_succeeded_after_completed_credits_once(pay_gateway, database, fakes, bought):
    user, payment, session = bought
    unpaid = await post_event(pay_gateway, completed(fakes, session, paid=False))
    assert (await unpaid.json())["status"] == "pending" and await deposits(database, user["id"]) == 0
    succeeded = fakes.stripe.event("checkout.session.async_payment_succeeded",
                                   {**session, "status": "complete", "payment_status": "paid"})
    for body in (succeeded, completed(fakes, session), succeeded):
        assert (await post_event(pay_gateway, body)).status == 200
    assert await deposits(database, user["id"]) == TEN


async def test_the_fake_checkout_page_pays_and_its_webhook_credits(pay_gateway, database, fakes, bought):
    user, payment, _ = bought
    answer = await (await pay_gateway.session.get(payment["payment_url"] + "?async=1")).json()
    assert [hook["status"] for hook in answer["webhooks"]] == [200, 200]
    assert await deposits(database, user["id"]) == TEN


@pytest.mark.parametrize("forge", ["tampered body", "wrong secret", "10 minutes old", "10 minutes ahead"])
async def test_a_forged_or_stale_event_is_400_and_credits_nothing(pay_gateway, database, fakes, bought, forge):
    user, payment, session = bought
    body = completed(fakes, session)
    signature = {"wrong secret": signed(body, "whsec_not_ours"),
                 "10 minutes old": signed(body, timestamp=int(time.time()) - 600),
                 "10 minutes ahead": signed(body, timestamp=int(time.time()) + 600)}.get(forge, signed(body))
    if forge == "tampered body":
        body = body.replace(b'"amount_total": 1000', b'"amount_total": 100000')
    response = await post_event(pay_gateway, body, signature)
    assert response.status == 400
    assert (await response.json())["error"]["code"] in ("invalid_signature", "stale_signature")
    assert await deposits(database, user["id"]) == 0
    assert (await payment_row(database, payment["payment_id"]))["status"] == "pending"


async def test_an_event_for_another_amount_or_an_unknown_session_credits_nothing_and_is_recorded(
        pay_gateway, database, fakes, bought):
    user, payment, session = bought
    cheap = fakes.stripe.event("checkout.session.completed", {**session, "payment_status": "paid",
                                                              "amount_total": 100})
    response = await post_event(pay_gateway, cheap)
    assert (response.status, (await response.json())["error"]["code"]) == (400, "payment_mismatch")
    unknown = fakes.stripe.event("checkout.session.completed", {**session, "id": "cs_test_unknown",
                                                                "payment_status": "paid"})
    response = await post_event(pay_gateway, unknown)
    assert (response.status, (await response.json())["error"]["code"]) == (400, "unknown_payment")
    assert await deposits(database, user["id"]) == 0
    assert ("pending", "rejected:checkout.session.completed") in await history(database, payment["payment_id"])
    rejected = await database.fetchval("SELECT count(*) FROM audit_log WHERE action = 'payment.callback_rejected'")
    assert rejected == 2


async def test_an_expired_session_is_expired_and_money_arriving_later_still_credits(pay_gateway, database, fakes,
                                                                                     bought):
    user, payment, session = bought
    expired = fakes.stripe.event("checkout.session.expired", {**session, "status": "expired"})
    assert (await (await post_event(pay_gateway, expired)).json())["status"] == "expired"
    assert (await (await post_event(pay_gateway, completed(fakes, session))).json())["status"] == "paid"
    assert (await (await post_event(pay_gateway, expired)).json())["status"] == "paid"
    assert await deposits(database, user["id"]) == TEN


async def test_a_refund_takes_the_credits_back_and_the_rest_is_owed_until_paid(pay_gateway, database, fakes,
                                                                               bought):
    user, payment, session = bought
    await pay_gateway.session.get(payment["payment_url"])
    spend = await pay_gateway.post("/api/v1/tokens/purchase", headers=user["headers"], json={"duration_hours": 1})
    assert spend.status == 201  # 1 of the 10 credits spent
    refund = await pay_gateway.session.post(f"{fakes.urls['stripe']}/_fake/sessions/{session['id']}/refund")
    assert (await refund.json())["status"] == 200
    again = await pay_gateway.session.post(f"{fakes.urls['stripe']}/_fake/sessions/{session['id']}/refund")
    assert (await again.json())["status"] == 200  # a replayed refund takes nothing more
    balance = await ledger.balance(database, user["id"])
    assert (balance.posted_micro, balance.owed_micro) == (0, ledger.MICRO_PER_CREDIT)
    assert (await payment_row(database, payment["payment_id"]))["status"] == "refunded"
    blocked = await pay_gateway.post("/api/v1/tokens/purchase", headers=user["headers"], json={"duration_hours": 1})
    assert blocked.status == 402
    # The next payment repays the debt first.
    second = await buy(pay_gateway, user["headers"], credits="5", provider="stripe")
    await pay_gateway.session.get(second["payment_url"])
    assert await available(database, user["id"]) == 4 * ledger.MICRO_PER_CREDIT


async def test_a_partial_refund_takes_its_share(pay_gateway, database, fakes, bought):
    user, payment, session = bought
    await pay_gateway.session.get(payment["payment_url"])
    await pay_gateway.session.post(f"{fakes.urls['stripe']}/_fake/sessions/{session['id']}/refund?amount=250")
    assert await available(database, user["id"]) == 7_500_000
    row = await payment_row(database, payment["payment_id"])
    assert (row["status"], row["refunded_micro"]) == ("partially_refunded", 2_500_000)


async def test_a_stripe_session_whose_webhook_is_lost_is_settled_by_the_recheck(pay_gateway_factory, database,
                                                                                 fakes):
    gateway = await pay_gateway_factory(payment_recheck_delay_s=0.05, payment_recheck_interval_s=0.05)
    user = await register(gateway, "payer@example.com")
    payment = await buy(gateway, user["headers"], credits="10", provider="stripe")
    await gateway.session.get(payment["payment_url"] + "?deliver=0")
    for _ in range(100):
        if await deposits(database, user["id"]):
            break
        await asyncio.sleep(0.05)
    assert await deposits(database, user["id"]) == TEN
    assert ("paid", "recheck") in await history(database, payment["payment_id"])
    assert (await payment_row(database, payment["payment_id"]))["provider_payment"].startswith("pi_")


async def test_a_session_made_for_an_earlier_payment_of_the_same_id_is_never_handed_out(pay_gateway, database,
                                                                                         fakes):
    """Stripe answers a repeated Idempotency-Key with the first answer for 24 h. Payment ids come
    again after a database is restored from a backup (and another gateway on the same Stripe
    account counts from 1 too): a key made of the id alone handed the new buyer the session someone
    else had paid, and the re-check credited them."""
    earlier = {"id": "cs_test_earlier_life", "object": "checkout.session", "url": "https://stripe.example/pay/x",
               "status": "complete", "payment_status": "paid", "amount_total": 1000, "currency": "usd",
               "payment_intent": "pi_earlier", "client_reference_id": "1", "metadata": {"payment_id": "1"}}
    fakes.stripe.sessions[earlier["id"]] = earlier
    fakes.stripe.by_idempotency_key["tollgate-payment-1"] = earlier["id"]
    user = await register(pay_gateway, "payer@example.com")
    payment = await buy(pay_gateway, user["headers"], credits="10", provider="stripe")
    assert payment["payment_id"] == 1 and payment["payment_url"] != earlier["url"]
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
    await recheck.recheck_once(pay_gateway.app[PAYMENTS], later)
    assert await deposits(database, user["id"]) == 0
    assert (await payment_row(database, payment["payment_id"]))["status"] == "pending"
