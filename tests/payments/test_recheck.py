"""The re-check task: due payments are claimed by one worker, asked after at their provider, settled
like a callback; a provider that fails is asked again later; Robokassa (no API) is never asked."""

from __future__ import annotations

import datetime as dt

from gateway.payments import recheck
from gateway.payments.resources import PAYMENTS
from tests.support.accounts import register
from tests.support.payments import buy, history, payment_row


async def test_a_provider_that_fails_leaves_the_payment_pending_and_due_again(pay_gateway, database, fakes):
    user = await register(pay_gateway, "payer@example.com")
    payment = await buy(pay_gateway, user["headers"], credits="5", provider="stripe")
    fakes.stripe.api_key = "sk_rotated"  # every retrieve now fails
    services = pay_gateway.app[PAYMENTS]
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
    assert await recheck.recheck_once(services, later) == 0
    row = await payment_row(database, payment["payment_id"])
    assert row["status"] == "pending" and row["next_check_at"] > later  # claimed: due again after the interval
    assert await recheck.recheck_once(services, later) == 0  # not due twice in one pass


async def test_a_payment_pending_too_long_is_given_up_and_robokassa_is_never_asked(pay_gateway, database, fakes):
    user = await register(pay_gateway, "payer@example.com")
    stale = await buy(pay_gateway, user["headers"], credits="5", provider="stripe")
    robokassa = await buy(pay_gateway, credits="5", provider="robokassa", email="guest@example.com")
    services = pay_gateway.app[PAYMENTS]
    much_later = dt.datetime.now(dt.timezone.utc) + recheck.PENDING_AGE_MAX + dt.timedelta(hours=2)
    assert await recheck.recheck_once(services, much_later) == 1
    assert await history(database, stale["payment_id"]) == [("pending", "created"), ("expired", "recheck_gave_up")]
    row = await payment_row(database, robokassa["payment_id"])
    assert row["status"] == "pending" and row["next_check_at"] is None


async def test_one_payments_unexpected_failure_does_not_stop_the_others(pay_gateway, database, fakes):
    """The re-check is what settles lost webhooks: a surprise in one payment (here the first provider
    call raises something no one planned for) must leave the rest of the pass, and the task, running."""
    user = await register(pay_gateway, "payer@example.com")
    first = await buy(pay_gateway, user["headers"], credits="5", provider="stripe")
    second = await buy(pay_gateway, user["headers"], credits="7", provider="stripe")
    for payment in (first, second):
        await pay_gateway.session.get(payment["payment_url"] + "?deliver=0")  # paid, webhook lost
    services = pay_gateway.app[PAYMENTS]
    stripe = services.providers["stripe"]
    original, calls = stripe.recheck, []

    async def surprising(reference):
        calls.append(reference)
        if len(calls) == 1:
            raise RuntimeError("a provider answer no one planned for")
        return await original(reference)

    stripe.recheck = surprising
    try:
        later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
        assert await recheck.recheck_once(services, later) == 1
    finally:
        stripe.recheck = original
    statuses = {p["payment_id"]: (await payment_row(database, p["payment_id"]))["status"] for p in (first, second)}
    assert sorted(statuses.values()) == ["paid", "pending"]  # the surprising one is due again later
