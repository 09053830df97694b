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
