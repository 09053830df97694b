"""Settlement: each event applied once under the payment's lock; money that arrived always wins."""

from __future__ import annotations

import asyncio

import pytest

import ledger
from tests.support.accounts import register
from tests.support.payments import available, buy, deposits, history, payment_row

TEN = 10 * ledger.MICRO_PER_CREDIT


async def stripe_payment(gateway, fakes):
    user = await register(gateway, "payer@example.com")
    payment = await buy(gateway, user["headers"], credits="10", provider="stripe")
    return user, payment, list(fakes.stripe.sessions.values())[-1]


async def test_a_refund_whose_payment_webhook_was_lost_credits_then_takes_back(pay_gateway, database, fakes):
    user, payment, session = await stripe_payment(pay_gateway, fakes)
    await pay_gateway.session.get(payment["payment_url"] + "?deliver=0")  # paid, its webhook lost
    await pay_gateway.session.post(f"{fakes.urls['stripe']}/_fake/sessions/{session['id']}/refund")
    assert await available(database, user["id"]) == 0
    assert await deposits(database, user["id"]) == TEN
    await fakes.stripe.send("checkout.session.completed", dict(session))
    assert await deposits(database, user["id"]) == TEN  # the late completion is a replay
    assert [status for status, _ in await history(database, payment["payment_id"])] == ["pending", "paid", "refunded"]


async def test_a_failure_after_the_credit_changes_nothing(pay_gateway, database, fakes):
    user, payment, session = await stripe_payment(pay_gateway, fakes)
    await pay_gateway.session.get(payment["payment_url"])
    await fakes.stripe.send("checkout.session.async_payment_failed", dict(session))
    assert (await payment_row(database, payment["payment_id"]))["status"] == "paid"
    assert await available(database, user["id"]) == TEN


async def test_every_event_of_one_payment_at_once_credits_once(pay_gateway, database, fakes):
    user, payment, session = await stripe_payment(pay_gateway, fakes)
    session.update(status="complete", payment_status="paid", payment_intent="pi_1")
    kinds = ["checkout.session.completed", "checkout.session.async_payment_succeeded"] * 5
    await asyncio.gather(*(fakes.stripe.send(kind, dict(session)) for kind in kinds))
    assert await deposits(database, user["id"]) == TEN
    assert (await payment_row(database, payment["payment_id"]))["transfer_id"] is not None


def sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_count_payments_by_provider_and_status_and_the_credits(pay_gateway, database, fakes):
    before = await (await pay_gateway.get("/metrics")).text()
    user, payment, session = await stripe_payment(pay_gateway, fakes)
    await pay_gateway.session.get(payment["payment_url"])
    await fakes.stripe.send("checkout.session.completed", dict(session))  # a replay
    after = await (await pay_gateway.get("/metrics")).text()
    for name, labels, delta in (("tollgate_payments_total", {"provider": "stripe", "status": "paid"}, 1),
                                ("tollgate_payment_credits_micro_total", {"provider": "stripe"}, TEN),
                                ("tollgate_payment_callbacks_total", {"provider": "stripe", "result": "ok"}, 1),
                                ("tollgate_payment_callbacks_total", {"provider": "stripe", "result": "replayed"}, 1)):
        assert sample(after, name, **labels) - sample(before, name, **labels) == delta, name


async def test_a_refund_and_another_payment_of_one_user_at_once_neither_deadlock_nor_double(pay_gateway, database,
                                                                                              fakes):
    user = await register(pay_gateway, "payer@example.com")
    first = await buy(pay_gateway, user["headers"], credits="10", provider="stripe")
    await pay_gateway.session.get(first["payment_url"])
    first_session = list(fakes.stripe.sessions.values())[-1]
    second = await buy(pay_gateway, user["headers"], credits="10", provider="stripe")
    await pay_gateway.session.get(second["payment_url"] + "?deliver=0")
    second_session = list(fakes.stripe.sessions.values())[-1]
    refund = fakes.stripe.charge(first_session, first_session["amount_total"])
    sends = [fakes.stripe.send("charge.refunded", refund) for _ in range(5)]
    sends += [fakes.stripe.send("checkout.session.completed", dict(second_session)) for _ in range(5)]
    delivered = await asyncio.gather(*sends)
    assert [d.status for d in delivered] == [200] * 10
    assert await deposits(database, user["id"]) == 2 * TEN
    assert await available(database, user["id"]) == TEN


@pytest.mark.parametrize("charged, refunded", [(100_000, 100), (1000, 100)])
async def test_a_refund_of_another_charge_naming_an_unpaid_payment_credits_nothing(pay_gateway, database, fakes,
                                                                                  charged, refunded):
    """A charge elsewhere in the Stripe account (another app, a staging gateway) whose metadata says
    payment_id = ours: its partial refund must not credit our payment nobody paid."""
    user, payment, session = await stripe_payment(pay_gateway, fakes)
    foreign = {"id": "ch_foreign", "object": "charge", "amount": charged, "amount_refunded": refunded,
               "currency": "usd", "payment_intent": "pi_foreign",
               "metadata": {"payment_id": str(payment["payment_id"])}}
    delivered = await fakes.stripe.send("charge.refunded", foreign)
    assert delivered.status == 400
    assert await deposits(database, user["id"]) == 0 and await available(database, user["id"]) == 0
    row = await payment_row(database, payment["payment_id"])
    assert (row["status"], row["transfer_id"], row["provider_payment"]) == ("pending", None, None)
    assert ("pending", "rejected:charge.refunded") in await history(database, payment["payment_id"])


async def test_a_foreign_refund_naming_a_payment_paid_with_its_webhook_lost_takes_nothing(pay_gateway, database,
                                                                                           fakes):
    """The payment was paid (its webhook lost): asking Stripe credits it, and a refund of another
    PaymentIntent then takes nothing back."""
    user, payment, session = await stripe_payment(pay_gateway, fakes)
    await pay_gateway.session.get(payment["payment_url"] + "?deliver=0")
    foreign = {**fakes.stripe.charge(session, 1000), "payment_intent": "pi_foreign"}
    assert (await fakes.stripe.send("charge.refunded", foreign)).status == 400
    assert await available(database, user["id"]) == TEN
    assert (await payment_row(database, payment["payment_id"]))["provider_payment"] == session["payment_intent"]


async def test_a_guest_payment_never_credits_an_account_someone_else_registered_with_the_address(pay_gateway,
                                                                                                   database, fakes):
    """Review of issue 9: registration does not prove an address, so a squatter who registered the
    victim's address first must not receive the victim's guest payment: the checkout is refused
    (the owner logs in — a magic link reaches the address — to buy)."""
    squatter = await register(pay_gateway, "victim@example.com", password="the squatter's password")
    response = await pay_gateway.post("/api/v1/currency/purchase", json={
        "credits": "10", "provider": "robokassa", "email": "victim@example.com"})
    assert response.status == 409 and (await response.json())["error"]["code"] == "account_exists"
    assert await available(database, squatter["id"]) == 0
    assert await database.fetchval("SELECT count(*) FROM payments") == 0


async def test_nobody_can_register_a_guests_address_between_checkout_and_payment(pay_gateway, database, fakes):
    """The guest's account is made at checkout: registering the address afterwards is refused, and
    the payment credits the guest's account, whose owner gets the login link."""
    response = await pay_gateway.post("/api/v1/currency/purchase", json={
        "credits": "10", "provider": "robokassa", "email": "guest@example.com"})
    assert response.status == 201
    squatter = await pay_gateway.post("/api/v1/auth/register", json={
        "email": "guest@example.com", "username": "squat", "password": "the squatter's password",
        "full_name": "S"})
    assert squatter.status == 409
    await pay_gateway.session.get((await response.json())["payment_url"])
    owner = await database.fetchval("SELECT id FROM users WHERE email = 'guest@example.com'")
    assert await available(database, owner) == TEN
