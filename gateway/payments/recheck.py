"""Background task: payments still pending after a while are asked after at their provider (Stripe's
session, CryptoCloud's invoice), because webhooks get lost; the answer is settled like a callback.

Every worker runs it; a due payment is claimed by one of them (the claim moves its next check on)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from gateway.core.errors import GatewayError
from gateway.core.failures import POSTGRES_FAILURES
from gateway.payments import notices, settlement, store
from gateway.payments.providers import EXPIRED, PENDING, Event, Provider
from gateway.payments.resources import Payments

log = logging.getLogger(__name__)
BATCH_MAX = 50
# A payment pending this long is given up (expired); a later paid callback still credits it.
PENDING_AGE_MAX = dt.timedelta(days=3)


async def recheck_once(services: Payments, now: dt.datetime) -> int:
    """One pass over the due payments; returns how many changed."""
    interval = dt.timedelta(seconds=services.settings.payment_recheck_interval_s)
    providers = [name for name, provider in services.providers.items() if provider.recheckable]
    due = await store.claim_due(services.pool, now=now, next_check_at=now + interval, providers=providers,
                                batch_max=BATCH_MAX)
    changed = 0
    for row in due:
        provider = services.providers[row["provider"]]
        try:
            event = await provider.recheck(row["provider_reference"])
            if event.status == PENDING and now - row["created_at"] > PENDING_AGE_MAX:
                event = Event(EXPIRED, "recheck_gave_up", reference=event.reference)
            changed += await settle(services, provider, event, payment_id=row["id"], now=now)
        except GatewayError as error:  # the provider is down or refuses: the claim retries it later
            log.warning("re-check of payment %d failed: %s", row["id"], error.code)
        except POSTGRES_FAILURES:
            raise  # the store is away: the pass ends here, the next one starts over
        except Exception:  # one payment's surprise must not stop the others' (its claim retries it)
            log.exception("re-check of payment %d failed", row["id"])
    return changed


async def settle(services: Payments, provider: Provider, event: Event, *, payment_id: int, now: dt.datetime) -> bool:
    """Apply what the provider said when asked; whether the payment changed."""
    settled = await settlement.apply(services.pool, provider.name, event, payment_id=payment_id, now=now,
                                     source="recheck")
    if settled.rejection is not None:
        log.warning("re-check of payment %d refused: %s", payment_id, settled.rejection.message)
        return False
    settlement.observe(provider.name, settled)
    await notices.mail_guest(services.pool, services.settings, services.mailer, settled, now)
    return settled.changed


async def ask_before_refund(services: Payments, provider: Provider, payment_id: int, now: dt.datetime) -> None:
    """A refund is believed only of a payment paid with its charge. When the payment's paid event has
    not come (lost, or the refund names someone else's charge), the provider is asked first, as the
    re-check would, and its answer settled: a paid session credits and teaches its PaymentIntent."""
    payment = await store.get(services.pool, payment_id)
    if payment is None or payment.transfer_id is not None or payment.provider_reference is None:
        return
    if provider.recheckable:
        await settle(services, provider, await provider.recheck(payment.provider_reference), payment_id=payment_id,
                     now=now)


async def run(services: Payments, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            now = dt.datetime.fromtimestamp(services.clock.now_s(), dt.timezone.utc)
            changed = await recheck_once(services, now)
            if changed:
                log.info("re-check settled %d payment(s)", changed)
        except POSTGRES_FAILURES as error:
            log.warning("payment re-check failed: %s", type(error).__name__)
        except Exception:  # the task's boundary: it must outlive any one pass, or lost webhooks stay lost
            log.exception("payment re-check pass failed")
